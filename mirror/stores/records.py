"""The rows the metadata index hands out: plain values, shared by the index and its read cache."""

from __future__ import annotations

from dataclasses import dataclass

from mirror.reference import Digest


@dataclass(frozen=True, slots=True)
class TagRow:
    """What a tag resolved to, and when. How long that answer stays fresh is the tag TTL in
    force now (the service decides), so a shorter TTL after a restart applies to old rows too."""

    digest: Digest
    media_type: str
    resolved_at: float


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
