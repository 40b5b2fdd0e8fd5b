"""The rows the metadata index hands out: plain values, shared by the index and its read cache."""

from __future__ import annotations

from dataclasses import dataclass

from mirror.reference import Digest


@dataclass(frozen=True, slots=True)
class TagRow:
    """What a tag resolved to, and until when that answer is fresh."""

    digest: Digest
    media_type: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class StoredManifest:
    """A manifest's bytes exactly as the upstream sent them (its digest covers them)."""

    digest: Digest
    media_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class BlobRow:
    digest: Digest
    size: int


@dataclass(frozen=True, slots=True)
class Forgotten:
    """What a purge removed from the index (or, in a dry run, would remove)."""

    tags: int = 0
    manifests: int = 0
