"""This replica's index with the bucket's records behind it.

Reads look in the local index (SQLite and its read cache) first and ask the bucket only on a
local miss, adopting what they find there, so a hit never waits for the bucket. Writes go to
both: the local index, then the bucket, so a replica that never saw an image can serve it
from what another one recorded. With the filesystem backend (`LocalOnly` records) this is the
local index and nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from mirror.errors import Unavailable
from mirror.manifest_refs import referenced_digests
from mirror.reference import Digest
from mirror.stores.metadata import Metadata
from mirror.stores.records import StoredManifest, TagRow
from mirror.stores.shared_records import (
    InUse,
    LinkKey,
    RecordsAway,
    SharedRecords,
    TagKey,
)

log = logging.getLogger(__name__)

# How far ahead of this replica's clock another one's tag record may be dated (seconds).
CLOCK_SKEW = 60.0


class SharedIndex:
    def __init__(self, metadata: Metadata, records: SharedRecords) -> None:
        self.metadata = metadata
        self.records = records
        # Bucket lookups of links in flight: a storm of clients asks the bucket once.
        self._link_lookups: dict[tuple[str, str, Digest], asyncio.Task[bool]] = {}

    @property
    def shared(self) -> bool:
        return self.records.shared

    # -- links ------------------------------------------------------------------------------

    async def has_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Known here, or recorded in the bucket by a replica the upstream vouched to (then
        known here from now on)."""
        if await self.metadata.has_link(upstream, repo, digest):
            return True
        if not self.shared:
            return False
        key = (upstream, repo, digest)
        lookup = self._link_lookups.get(key)
        if lookup is None:
            lookup = asyncio.create_task(self._bucket_link(upstream, repo, digest))
            self._link_lookups[key] = lookup
            lookup.add_done_callback(lambda _: self._link_lookups.pop(key, None))
        # Shielded: a client that goes away does not cancel the others' lookup.
        return await asyncio.shield(lookup)

    async def _bucket_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        if not await self.records.has_link(upstream, repo, digest):
            return False
        await self.metadata.add_link(upstream, repo, digest)
        return True

    async def add_link(self, upstream: str, repo: str, digest: Digest) -> None:
        """The upstream just vouched that repo holds digest."""
        if await self.metadata.add_link(upstream, repo, digest) and self.shared:
            await self.records.put_links(upstream, repo, [digest])

    # -- manifests --------------------------------------------------------------------------

    async def adopt_manifest(
        self,
        upstream: str,
        repo: str,
        digest: Digest,
        linked: bool,
        confirm: Callable[[], Awaitable[None]],
        now: float,
    ) -> StoredManifest | None:
        """A manifest another replica stored (bytes checked against the digest), indexed here
        once the repository is known to hold it: `linked` (the upstream just said so), a link
        here or in the bucket, or `confirm` (asks the upstream; raises when it says no)."""
        manifest = await self.records.get_manifest(digest) if self.shared else None
        if manifest is None:
            return None
        if linked:
            await self.add_link(upstream, repo, digest)
        elif not await self.has_link(upstream, repo, digest):
            await confirm()
        await self.put_manifest(manifest, now, upstream, repo, publish=False)
        return manifest

    async def put_manifest(
        self,
        manifest: StoredManifest,
        now: float,
        upstream: str,
        repo: str,
        *,
        publish: bool = True,
    ) -> None:
        """Index a verified manifest, what it references and their links to the repository;
        `publish`: record them in the bucket too (not when they were just read from it)."""
        children = referenced_digests(manifest.body)
        await self.metadata.put_manifest(manifest, now, upstream, repo, children)
        if publish and self.shared:
            await self._publish(manifest, upstream, repo, children)

    async def republish(self, manifest: StoredManifest, upstream: str, repo: str) -> None:
        """Record a manifest known here in the bucket again, if it is missing there."""
        if self.shared and not await self.records.has_manifest(manifest.digest):
            await self._publish(manifest, upstream, repo, referenced_digests(manifest.body))

    async def _publish(
        self, manifest: StoredManifest, upstream: str, repo: str, children: Iterable[Digest]
    ) -> None:
        # Together, and awaited by the callers before any tag record names the manifest: a
        # replica that adopts the tag finds the manifest and its links there.
        await asyncio.gather(
            self.records.put_manifest(manifest),
            self.records.put_links(upstream, repo, [manifest.digest, *children]),
        )

    # -- tags -------------------------------------------------------------------------------

    async def adopt_tag(
        self,
        upstream: str,
        repo: str,
        tag: str,
        row: TagRow | None,
        last_known: StoredManifest | None,
        ttl: float,
        now: float,
    ) -> StoredManifest | None:
        """The bucket's record of a tag stale or unknown here (`row`, its manifest
        `last_known`). Newer than the row: indexed here with its manifest, to be served while
        fresh without the upstream. Gone from the bucket while known here: purged through
        another replica, so no longer served stale (the caller resolves it upstream). Returns
        what may be served from now on, fresh or stale."""
        try:
            record = await self.records.get_tag(upstream, repo, tag) if self.shared else None
        except RecordsAway:
            # Not a purge: nobody can tell. Go on with this index and the upstream.
            return last_known
        if record is None:
            return None if row is not None and self.shared else last_known
        if record.resolved_at > now + CLOCK_SKEW:
            # Dated ahead of any clock here (a replica's clock far ahead, or a planted record):
            # adopted, it would be fresh for as long as it says. Resolve upstream instead.
            log.warning("ignoring the bucket's record of %s:%s: dated in the future", repo, tag)
            return last_known
        if row is not None and last_known is not None and record.resolved_at <= row.resolved_at:
            return last_known
        # A little ahead (clock skew): fresh from now on, not from then.
        record = TagRow(record.digest, record.media_type, min(record.resolved_at, now))
        manifest = await self.metadata.get_manifest(record.digest)
        if manifest is None:
            manifest = await self.records.get_manifest(record.digest)
            if manifest is None or manifest.media_type != record.media_type:
                return last_known  # the record outlived its manifest: resolve upstream
            await self.put_manifest(manifest, now, upstream, repo, publish=False)
        await self.put_tag(upstream, repo, tag, record, ttl, publish=False)
        return manifest

    async def known_tags(self, upstream: str, repo: str) -> list[str]:
        """The tags this replica indexed, and those any replica recorded in the bucket."""
        tags = set(await self.metadata.list_tags(upstream, repo))
        if self.shared:
            tags.update(await self.records.list_tags(upstream, repo))
        return sorted(tags)

    async def put_tag(
        self,
        upstream: str,
        repo: str,
        tag: str,
        row: TagRow,
        ttl: float,
        *,
        locked: bool = False,
        pulled_at: float | None = None,
        publish: bool = True,
    ) -> None:
        await self.metadata.put_tag(
            upstream, repo, tag, row, ttl, locked=locked, pulled_at=pulled_at
        )
        if publish and self.shared:
            await self.records.put_tag(upstream, repo, tag, row)

    # -- removals ---------------------------------------------------------------------------

    def forget(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> None:
        """What a purge or retention removed from the index leaves the bucket too."""
        if self.shared:
            self.records.forget(tags, links, manifests)

    async def remove(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> None:
        """What a purge removed from the index leaves the bucket now: Unavailable when the
        bucket refused (else this replica would adopt the purged records back at once)."""
        if self.shared and not await self.records.remove(tags, links, manifests):
            raise Unavailable(
                "purged here, but the blob store did not remove the records: purge again"
            )

    async def remove_all(self, in_use: InUse) -> None:
        """Everything replicas share in the bucket leaves it now, blobs included but those
        `in_use` keeps (a purge of everything): Unavailable when the bucket refused some."""
        if self.shared and not await self.records.remove_all(in_use):
            raise Unavailable(
                "purged here, but the blob store did not remove everything: purge again"
            )
