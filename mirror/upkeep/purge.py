"""Purges: forget tags, manifests and blobs on an operator's word (admin API and CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mirror.reference import Digest
from mirror.stores.metadata import Metadata
from mirror.stores.removal import BlobRemover


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
    """Purges go through BlobRemover: rows first, files once no reader holds them; a running
    fill completes and stores its blob."""

    def __init__(self, metadata: Metadata, remover: BlobRemover) -> None:
        self._metadata = metadata
        self._remover = remover

    async def _scalar(self, sql: str, args: tuple[Any, ...]) -> int:
        async with self._metadata.db.execute(sql, args) as cursor:
            row = await cursor.fetchone()
        return int(row[0] or 0) if row else 0

    async def repository(
        self, upstream: str, repo: str, tag: str | None, dry_run: bool
    ) -> PurgeReport:
        """Forget a repository's tags (or one tag) and, for the whole repository, its links."""
        db = self._metadata.db
        args: tuple[str, ...]
        if tag is not None:
            where, args = "upstream = ? AND repo = ? AND tag = ?", (upstream, repo, tag)
        else:
            where, args = "upstream = ? AND repo = ?", (upstream, repo)
        tags = await self._scalar(f"SELECT count(*) FROM tags WHERE {where}", args)
        if not dry_run:
            await db.execute(f"DELETE FROM tags WHERE {where}", args)
            if tag is None:
                await db.execute("DELETE FROM links WHERE upstream = ? AND repo = ?", args)
            await db.commit()
            self._metadata.cache.clear()
        return PurgeReport(tags=tags, dry_run=dry_run)

    async def manifest(self, digest: Digest, dry_run: bool) -> PurgeReport:
        """Remove a manifest and the tags that point at it (the next pull resolves them)."""
        db = self._metadata.db
        key = (str(digest),)
        manifests = await self._scalar("SELECT count(*) FROM manifests WHERE digest = ?", key)
        tags = await self._scalar("SELECT count(*) FROM tags WHERE digest = ?", key)
        if not dry_run:
            await db.execute("DELETE FROM tags WHERE digest = ?", key)
            await db.execute("DELETE FROM manifests WHERE digest = ?", key)
            await db.commit()
            self._metadata.cache.clear()
        return PurgeReport(tags=tags, manifests=manifests, dry_run=dry_run)

    async def blob(self, digest: Digest, dry_run: bool) -> PurgeReport:
        """Remove a stored blob; it is fetched again on the next request."""
        key = (str(digest),)
        blobs = await self._scalar("SELECT count(*) FROM blobs WHERE digest = ?", key)
        size = await self._scalar("SELECT sum(size) FROM blobs WHERE digest = ?", key)
        if dry_run:
            return PurgeReport(blobs=blobs, bytes=size, dry_run=True)
        removed = await self._remover.remove([str(digest)])
        return PurgeReport(blobs=len(removed), bytes=sum(s for _, s in removed))

    async def everything(self, dry_run: bool) -> PurgeReport:
        """Forget all tags, manifests and links, and remove every blob stored now (a download
        that finishes meanwhile keeps its new blob)."""
        rows = await self._metadata.blob_rows()
        tags = await self._metadata.count("tags")
        manifests = await self._metadata.count("manifests")
        if dry_run:
            return PurgeReport(tags, manifests, len(rows), sum(s for _, s in rows), dry_run=True)
        db = self._metadata.db
        for table in ("tags", "manifests", "links"):
            await db.execute(f"DELETE FROM {table}")
        await db.commit()
        self._metadata.cache.clear()
        removed = await self._remover.remove(digest for digest, _ in rows)
        return PurgeReport(tags, manifests, len(removed), sum(s for _, s in removed))
