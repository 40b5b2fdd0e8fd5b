"""What replicas share beside blobs: tag records, manifests by digest, repository links.

With the filesystem backend a replica is alone and its SQLite index is the whole truth
(`LocalOnly`: nothing is shared, every call is free). With a bucket, these records live in it
too (s3_records.py), so a replica that never saw an image, or lost its disk, serves it from the
bucket without asking the upstream: its index fills lazily from them (shared_index.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from mirror.reference import Digest
from mirror.stores.records import StoredManifest, TagRow

TagKey = tuple[str, str, str]  # (upstream, repo, tag)
LinkKey = tuple[str, str, str]  # (upstream, repo, digest)
# Of some blobs' digests, those whose objects must stay (in use by this replica).
InUse = Callable[[list[Digest]], Awaitable[set[Digest]]]


class RecordsAway(Exception):
    """The bucket did not answer a read (logged): not the same as no record there."""


class SharedRecords(Protocol):
    @property
    def shared(self) -> bool:
        """Other replicas may have written records this one has not seen."""
        ...

    async def get_tag(self, upstream: str, repo: str, tag: str) -> TagRow | None:
        """The last resolution any replica recorded; None when none (or it was purged).
        RecordsAway when the bucket did not answer: nobody can tell whether it was purged."""
        ...

    async def put_tag(self, upstream: str, repo: str, tag: str, row: TagRow) -> None: ...

    async def list_tags(self, upstream: str, repo: str) -> list[str]:
        """The tags any replica recorded for the repository ([] when the store is away)."""
        ...

    async def get_manifest(self, digest: Digest) -> StoredManifest | None:
        """The manifest's exact bytes, checked against the digest; None when absent."""
        ...

    async def put_manifest(self, manifest: StoredManifest) -> None: ...

    async def has_manifest(self, digest: Digest) -> bool: ...

    async def has_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Some replica saw the upstream vouch that `repo` holds `digest`."""
        ...

    async def put_links(self, upstream: str, repo: str, digests: Iterable[Digest]) -> None: ...

    def forget(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> None:
        """Remove records a purge or retention removed from the index (in the background)."""
        ...

    async def remove(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> bool:
        """Remove those records now (a purge); False (logged) when the bucket refused some."""
        ...

    async def remove_all(self, in_use: InUse) -> bool:
        """Remove every tag record, manifest and link, and every blob object but those
        `in_use` keeps, whichever replica stored them (a purge of everything, now); False
        (logged) when the bucket refused some."""
        ...

    async def close(self) -> None:
        """Wait for removals in flight."""
        ...


class LocalOnly:
    """One replica on its own folder: nothing to share."""

    shared = False

    async def get_tag(self, upstream: str, repo: str, tag: str) -> TagRow | None:
        return None

    async def put_tag(self, upstream: str, repo: str, tag: str, row: TagRow) -> None:
        return None

    async def list_tags(self, upstream: str, repo: str) -> list[str]:
        return []

    async def get_manifest(self, digest: Digest) -> StoredManifest | None:
        return None

    async def put_manifest(self, manifest: StoredManifest) -> None:
        return None

    async def has_manifest(self, digest: Digest) -> bool:
        return False

    async def has_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        return False

    async def put_links(self, upstream: str, repo: str, digests: Iterable[Digest]) -> None:
        return None

    def forget(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> None:
        return None

    async def remove(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> bool:
        return True

    async def remove_all(self, in_use: InUse) -> bool:
        return True

    async def close(self) -> None:
        return None
