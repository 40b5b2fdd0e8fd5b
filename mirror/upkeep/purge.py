"""Purges: remove tags, manifests and blobs on an operator's word (admin API and CLI)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from mirror.errors import Unavailable
from mirror.metrics import Metrics
from mirror.reference import Digest
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.leases import BlobLeases
from mirror.stores.records import BlobRow
from mirror.stores.shared_index import SharedIndex
from mirror.stores.sweep import Sweeper, Swept


@dataclass(frozen=True, slots=True)
class PurgeReport:
    tags: int = 0
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    dry_run: bool = False
    # The digests removed (or that a dry run would remove); None for a purge of everything.
    manifest_digests: tuple[str, ...] | None = None
    blob_digests: tuple[str, ...] | None = None

    @classmethod
    def of(cls, swept: Swept, dry_run: bool) -> PurgeReport:
        return cls(
            tags=swept.tags,
            manifests=len(swept.manifests),
            blobs=len(swept.blobs),
            bytes=swept.bytes,
            dry_run=dry_run,
            manifest_digests=swept.manifests,
            blob_digests=tuple(str(row.digest) for row in swept.blobs),
        )

    def as_dict(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "tags": self.tags,
            "manifests": self.manifests,
            "blobs": self.blobs,
            "bytes": self.bytes,
            "dry_run": self.dry_run,
        }
        if self.manifest_digests is not None and self.blob_digests is not None:
            report["digests"] = {
                "manifests": list(self.manifest_digests),
                "blobs": list(self.blob_digests),
            }
        return report


class PurgeService:
    """Purges by image go through the Sweeper (stores/sweep.py: what only the purged content
    holds), blobs through the keeper: rows first, files once no reader holds them; a running
    fill completes and stores its blob. With a bucket, the records of what went (tags,
    manifests, links) leave it too, so other replicas stop serving them (shared_index.py),
    and so do objects other replicas stored: a balancer sends the admin request to any
    replica. The bucket's removals are awaited; a refusal is a 503 ("purge again")."""

    def __init__(
        self,
        index: SharedIndex,
        keeper: BlobKeeper,
        leases: BlobLeases,
        sweeper: Sweeper,
        metrics: Metrics,
    ) -> None:
        self._index = index
        self._metadata = index.metadata
        self._keeper = keeper
        self._leases = leases
        self._sweeper = sweeper
        self._metrics = metrics

    async def repository(
        self, upstream: str, repo: str, tag: str | None, dry_run: bool
    ) -> PurgeReport:
        """A repository's tags and links (or one tag), and the manifests and blobs that
        nothing else holds."""
        swept = await self._sweeper.repository(upstream, repo, tag, dry_run)
        if not dry_run and self._index.shared:
            # Other replicas may serve tags this one never indexed (a balancer sends the admin
            # request anywhere): the bucket's records of them go too.
            names = [tag] if tag is not None else await self._index.known_tags(upstream, repo)
            named = {(upstream, repo, name) for name in names}
            swept = replace(swept, tag_keys=tuple(sorted({*swept.tag_keys, *named})))
        return await self._done(swept, dry_run)

    async def manifest(self, digest: Digest, dry_run: bool) -> PurgeReport:
        """A manifest, the tags that point at it (the next pull resolves them), and what only
        it held."""
        swept = await self._sweeper.manifest(digest, dry_run)
        # Indexed here or not (a balancer sends the admin request anywhere), the bucket's copy
        # goes, so no replica adopts it, or a tag record naming it, again. The report counts
        # this replica's index.
        return await self._done(swept, dry_run, also=str(digest))

    async def blob(self, digest: Digest, dry_run: bool) -> PurgeReport:
        """Remove a stored blob; it is fetched again on the next request. With a bucket, its
        object goes whichever replica stored it (a balancer sends the admin request
        anywhere); the report counts this replica's index."""
        if dry_run:
            row = await self._metadata.blob_row(digest)
            return _blobs_report([row] if row else [], dry_run=True)
        if not self._index.shared:
            report = _blobs_report(await self._keeper.remove([digest]))
            self._metrics.removed("purge", blobs=report.blobs, size=report.bytes)
            return report
        rows = await self._metadata.delete_blobs([digest])
        held = self._leases.busy(digest)
        # Held here: by a client being sent it (deleted once it lets go, as from a folder), or
        # by a fill storing it (which completes and keeps its new blob).
        self._keeper.forget(rows, delete=held)
        report = _blobs_report(rows)
        self._metrics.removed("purge", blobs=report.blobs, size=report.bytes)
        # Awaited, as any purge's removals: a refusal is the operator's to see (503).
        if not held and not await self._keeper.backend.remove(digest):
            raise Unavailable("purged here, but the blob store did not remove it: purge again")
        return report

    async def everything(self, dry_run: bool) -> PurgeReport:
        """Forget all tags, manifests and links, and remove every blob stored now (a download
        that finishes meanwhile keeps its new blob). With a bucket, everything under the
        prefix goes, what only other replicas indexed too; the report counts this replica's
        index."""
        rows = await self._metadata.blob_rows()
        forgotten = await self._metadata.forget_all(dry_run)
        if dry_run:
            removed = rows
        elif self._index.shared:
            removed = await self._metadata.delete_blobs(row.digest for row in rows)
            # In the step the rows went (see BlobKeeper.forget): an object a client here is
            # being sent goes when the client lets go; the rest goes with the prefix, below.
            self._keeper.forget(row for row in removed if self._leases.busy(row.digest))
            idle = (row for row in removed if not self._leases.busy(row.digest))
            self._keeper.forget(idle, delete=False)
        else:
            removed = await self._keeper.remove(row.digest for row in rows)
        blobs = _blobs_report(removed, dry_run)
        report = PurgeReport(forgotten.tags, forgotten.manifests, blobs.blobs, blobs.bytes, dry_run)
        if not dry_run:
            self._count(report)
            # Awaited, as any purge's removals: a refusal is the operator's to see (503).
            await self._index.remove_all(self._in_use)
        return report

    async def _in_use(self, digests: list[Digest]) -> set[Digest]:
        """Of these blobs, those whose objects stay: held by a fill or a client here, or
        stored by a fill since the rows went. Asked in that order: a fill lets go of its
        blob only after writing the row, so none slips between the two looks."""
        held = {digest for digest in digests if self._leases.busy(digest)}
        landed = {row.digest for row in await self._metadata.blob_rows()}
        return held | (landed & set(digests))

    async def _done(self, swept: Swept, dry_run: bool, also: str | None = None) -> PurgeReport:
        """`also`: a manifest whose bucket record goes, indexed here or not."""
        if not dry_run:
            self._keeper.forget(swept.blobs)  # in the step the rows went: see forget
        report = PurgeReport.of(swept, dry_run)
        if not dry_run:
            self._count(report)
            manifests = {*swept.manifests, *([also] if also is not None else [])}
            # Awaited: records left in the bucket would be adopted back by the next request.
            await self._index.remove(swept.tag_keys, swept.link_keys, sorted(manifests))
        return report

    def _count(self, report: PurgeReport) -> None:
        self._metrics.removed(
            "purge",
            tags=report.tags,
            manifests=report.manifests,
            blobs=report.blobs,
            size=report.bytes,
        )


def _blobs_report(rows: list[BlobRow], dry_run: bool = False) -> PurgeReport:
    digests = tuple(str(row.digest) for row in rows)
    return PurgeReport(
        blobs=len(rows),
        bytes=sum(row.size for row in rows),
        dry_run=dry_run,
        manifest_digests=(),
        blob_digests=digests,
    )
