"""Image references as a site writes them, and the lock file that pins them to digests.

The lock is JSON, keyed by the full reference and written with sorted keys and one field a
line, so that a change of one image is a small diff in review. Written by `mirror lock`, read by
`mirror export` and by `mirror verify --lock` (here, in upkeep, because the server checks a lock
too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mirror.errors import DigestInvalid, NameInvalid, OperationError, TagInvalid
from mirror.reference import Digest, Tag, parse_repository

DOCKER_HUB = "docker.io"
_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")
LOCK_VERSION = 1


@dataclass(frozen=True, slots=True)
class ImageRef:
    """`alpine:3.19` is registry docker.io, repository library/alpine, tag 3.19."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def path_name(self) -> str:
        """The name to ask a mirror for: a path prefix selects an upstream other than the
        default one, as for a client's pull (docs/upstreams.md)."""
        if self.registry == DOCKER_HUB:
            return self.repository
        return f"{self.registry}/{self.repository}"

    @property
    def pinned(self) -> str:
        """The reference to fetch: the digest when there is one."""
        return self.digest or self.tag or "latest"


def parse_image(text: str) -> ImageRef:
    """Parse a reference as `docker pull` reads it; ValueError names what is wrong."""
    name, _, digest = text.partition("@")
    tag: str | None = None
    head, _, last = name.rpartition(":")
    if head and "/" not in last:
        name, tag = head, last
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = DOCKER_HUB, name
    if registry in _HUB_ALIASES:
        registry = DOCKER_HUB
    try:
        repository = parse_repository(repository, registry == DOCKER_HUB)
        if tag is not None:
            Tag.parse(tag)
        if digest:
            Digest.parse(digest)
    except (NameInvalid, TagInvalid, DigestInvalid) as exc:
        raise ValueError(f"{text!r}: {exc.message}") from None
    if tag is None and not digest:
        tag = "latest"
    return ImageRef(registry, repository, tag, digest or None)


@dataclass(frozen=True, slots=True)
class LockedManifest:
    """One image manifest kept from a tag: its platform (None for a tag that is not an
    index) and the bytes of its manifest, config and layers."""

    digest: str
    media_type: str
    platform: str | None
    size: int


@dataclass(frozen=True, slots=True)
class LockedImage:
    reference: ImageRef
    digest: str  # of what the tag pointed at: an index, or an image manifest
    media_type: str
    resolved_at: float  # when the tag was resolved (what an import records as its age)
    platforms: tuple[str, ...]  # the filter asked for; empty: every platform
    manifests: tuple[LockedManifest, ...]

    @property
    def size(self) -> int:
        return sum(manifest.size for manifest in self.manifests)


def format_time(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float:
    """RFC 3339 in UTC as the lock writes it; ValueError otherwise."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def dump_lock(images: list[LockedImage]) -> str:
    entries: dict[str, Any] = {}
    for image in images:
        entries[str(image.reference)] = {
            "digest": image.digest,
            "mediaType": image.media_type,
            "resolvedAt": format_time(image.resolved_at),
            "platforms": list(image.platforms),
            "manifests": [
                {
                    "digest": m.digest,
                    "mediaType": m.media_type,
                    "platform": m.platform,
                    "size": m.size,
                }
                for m in image.manifests
            ],
            "size": image.size,
        }
    document = {"lockVersion": LOCK_VERSION, "images": entries}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def load_lock(text: str, source: str = "the lock") -> list[LockedImage]:
    """Read a lock; OperationError names the entry that is not as `dump_lock` writes it."""
    try:
        document = json.loads(text)
        if document.get("lockVersion") != LOCK_VERSION:
            raise ValueError(f"lockVersion is not {LOCK_VERSION}")
        images: list[LockedImage] = []
        for reference, entry in document["images"].items():
            manifests = tuple(
                LockedManifest(
                    str(Digest.parse(m["digest"])), str(m["mediaType"]), m["platform"], m["size"]
                )
                for m in entry["manifests"]
            )
            if not all(isinstance(m.size, int) for m in manifests):
                raise ValueError(f"{reference}: a size is not a number")
            images.append(
                LockedImage(
                    parse_image(reference),
                    str(Digest.parse(entry["digest"])),
                    str(entry["mediaType"]),
                    parse_time(entry["resolvedAt"]),
                    tuple(str(p) for p in entry["platforms"]),
                    manifests,
                )
            )
    except (ValueError, KeyError, TypeError, AttributeError, DigestInvalid) as exc:
        raise OperationError(f"{source} is not a lock file: {exc}") from None
    return images
