"""Purges: forget tags, manifests and blobs on an operator's word (admin API and CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mirror.reference import Digest
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.metadata import Metadata
from mirror.stores.records import BlobRow


@dataclass(frozen=True, slots=True)
class PurgeReport:
    tags: int = 0
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PurgeService:
    """Index rows go through Metadata's forget_* methods, blobs through the keeper: rows
    first, files once no reader holds them; a running fill completes and stores its blob."""

    def __init__(self, metadata: Metadata, keeper: BlobKeeper) -> None:
        self._metadata = metadata
        self._keeper = keeper

    async def repository(
        self, upstream: str, repo: str, tag: str | None, dry_run: bool
    ) -> PurgeReport:
        """Forget a repository's tags (or one tag) and, for the whole repository, its links."""
        tags = await self._metadata.forget_tags(upstream, repo, tag, dry_run)
        return PurgeReport(tags=tags, dry_run=dry_run)

    async def manifest(self, digest: Digest, dry_run: bool) -> PurgeReport:
        """Remove a manifest and the tags that point at it (the next pull resolves them)."""
        forgotten = await self._metadata.forget_manifest(digest, dry_run)
        return PurgeReport(tags=forgotten.tags, manifests=forgotten.manifests, dry_run=dry_run)

    async def blob(self, digest: Digest, dry_run: bool) -> PurgeReport:
        """Remove a stored blob; it is fetched again on the next request."""
        if dry_run:
            row = await self._metadata.blob_row(digest)
            return _blobs_report([row] if row else [], dry_run=True)
        return _blobs_report(await self._keeper.remove([digest]))

    async def everything(self, dry_run: bool) -> PurgeReport:
        """Forget all tags, manifests and links, and remove every blob stored now (a download
        that finishes meanwhile keeps its new blob)."""
        rows = await self._metadata.blob_rows()
        forgotten = await self._metadata.forget_all(dry_run)
        if not dry_run:
            rows = await self._keeper.remove(row.digest for row in rows)
        blobs = _blobs_report(rows, dry_run)
        return PurgeReport(forgotten.tags, forgotten.manifests, blobs.blobs, blobs.bytes, dry_run)


def _blobs_report(rows: list[BlobRow], dry_run: bool = False) -> PurgeReport:
    return PurgeReport(blobs=len(rows), bytes=sum(row.size for row in rows), dry_run=dry_run)
