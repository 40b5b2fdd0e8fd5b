"""The local side's index in SQLite: tags with expiry, manifests by digest, blobs, repo links.

The only code that speaks SQL. Reads run as one `execute_fetchall` call, so no cursor stays
open across an await; writes hold `_writing`, so one task's commit never commits another
task's half-done statements on the shared connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiosqlite

from mirror.reference import Digest
from mirror.stores.read_cache import ReadCache
from mirror.stores.records import BlobRow, Forgotten, StoredManifest, TagRow
from mirror.stores.schema import migrate

DELETE_BATCH = 500  # digests per DELETE … IN (…): well under SQLite's variable limit
TABLES = ("tags", "manifests", "blobs", "links")


class Metadata:
    """One long-lived aiosqlite connection in WAL mode, and the read cache in front of it."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._connection: aiosqlite.Connection | None = None
        self._writing = asyncio.Lock()
        # What hits read, kept in memory; every write below updates it while holding
        # `_writing`, so a purge that clears it cannot be undone by a write finishing late.
        self._cache = ReadCache()

    @property
    def _db(self) -> aiosqlite.Connection:
        assert self._connection is not None, "Metadata.open() was not awaited"
        return self._connection

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = await aiosqlite.connect(self._path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await migrate(self._db)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._db.execute_fetchall(sql, args)]

    async def _scalar(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        rows = await self._rows(sql, args)
        return int(rows[0][0] or 0) if rows else 0

    async def ping(self) -> None:
        """Fails when the database is not usable (readiness)."""
        await self._rows("SELECT 1")

    # -- tags -------------------------------------------------------------------------------

    async def get_tag(self, upstream: str, repo: str, tag: str) -> TagRow | None:
        key = (upstream, repo, tag)
        cached = self._cache.tags.get(key)
        if cached is not None:
            return cached
        generation = self._cache.generation
        rows = await self._rows(
            "SELECT digest, media_type, expires_at FROM tags"
            " WHERE upstream = ? AND repo = ? AND tag = ?",
            key,
        )
        if not rows:
            return None
        digest, media_type, expires_at = rows[0]
        found = TagRow(Digest.parse(digest), media_type, float(expires_at))
        if self._cache.generation == generation:
            self._cache.put_tag(key, found)
        return found

    async def put_tag(self, upstream: str, repo: str, tag: str, row: TagRow, now: float) -> None:
        async with self._writing:
            await self._db.execute(
                "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?, ?, ?, ?)",
                (upstream, repo, tag, str(row.digest), row.media_type, now, row.expires_at),
            )
            await self._db.commit()
            self._cache.put_tag((upstream, repo, tag), row)

    async def list_tags(self, upstream: str, repo: str) -> list[str]:
        rows = await self._rows(
            "SELECT tag FROM tags WHERE upstream = ? AND repo = ? ORDER BY tag", (upstream, repo)
        )
        return [str(row[0]) for row in rows]

    # -- manifests --------------------------------------------------------------------------

    async def get_manifest(self, digest: Digest) -> StoredManifest | None:
        cached = self._cache.manifest(digest)
        if cached is not None:
            return cached
        generation = self._cache.generation
        rows = await self._rows(
            "SELECT media_type, body FROM manifests WHERE digest = ?", (str(digest),)
        )
        if not rows:
            return None
        found = StoredManifest(digest, rows[0][0], bytes(rows[0][1]))
        if self._cache.generation == generation:
            self._cache.put_manifest(found)
        return found

    async def put_manifest(
        self,
        manifest: StoredManifest,
        now: float,
        upstream: str,
        repo: str,
        references: Iterable[Digest],
    ) -> None:
        """Store a verified manifest and link it, and all it references, to the repository."""
        links = [(upstream, repo, digest) for digest in {manifest.digest, *references}]
        async with self._writing:
            await self._db.execute(
                "INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?)",
                (str(manifest.digest), manifest.media_type, manifest.body, now),
            )
            await self._db.executemany(
                "INSERT OR IGNORE INTO links VALUES (?, ?, ?)",
                [(up, name, str(digest)) for up, name, digest in links],
            )
            await self._db.commit()
            self._cache.put_manifest(manifest)
            for link in links:
                self._cache.add_link(link)

    # -- links ------------------------------------------------------------------------------

    async def has_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        key = (upstream, repo, digest)
        if key in self._cache.links:
            return True
        generation = self._cache.generation
        found = bool(
            await self._rows(
                "SELECT 1 FROM links WHERE upstream = ? AND repo = ? AND digest = ?",
                (upstream, repo, str(digest)),
            )
        )
        if found and self._cache.generation == generation:
            self._cache.add_link(key)
        return found

    async def add_link(self, upstream: str, repo: str, digest: Digest) -> None:
        key = (upstream, repo, digest)
        if key in self._cache.links:
            return  # already recorded: no write (this runs on every revalidation)
        async with self._writing:
            await self._db.execute(
                "INSERT OR IGNORE INTO links VALUES (?, ?, ?)", (upstream, repo, str(digest))
            )
            await self._db.commit()
            self._cache.add_link(key)

    # -- blobs ------------------------------------------------------------------------------

    async def put_blob(self, digest: Digest, size: int, now: float) -> bool:
        """Record a stored blob; False when a row for it existed already (then refreshed)."""
        key = str(digest)
        async with self._writing:
            cursor = await self._db.execute(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)", (key, size, now, now)
            )
            inserted = cursor.rowcount == 1
            await cursor.close()
            if not inserted:
                await self._db.execute(
                    "UPDATE blobs SET size = ?, last_access = ? WHERE digest = ?", (size, now, key)
                )
            await self._db.commit()
        return inserted

    async def blob_row(self, digest: Digest) -> BlobRow | None:
        rows = await self._rows("SELECT size FROM blobs WHERE digest = ?", (str(digest),))
        return BlobRow(digest, int(rows[0][0])) if rows else None

    async def blob_rows(self) -> list[BlobRow]:
        rows = await self._rows("SELECT digest, size FROM blobs")
        return [BlobRow(Digest.parse(digest), int(size)) for digest, size in rows]

    async def blobs_by_last_access(self) -> list[BlobRow]:
        """Every stored blob, least recently used first (the eviction order)."""
        rows = await self._rows("SELECT digest, size FROM blobs ORDER BY last_access, created_at")
        return [BlobRow(Digest.parse(digest), int(size)) for digest, size in rows]

    async def touch_blobs(self, accessed: Iterable[tuple[Digest, float]]) -> None:
        """Write a batch of last-access times (the janitor flushes them periodically)."""
        updates = [(when, str(digest)) for digest, when in accessed]
        async with self._writing:
            await self._db.executemany(
                "UPDATE blobs SET last_access = max(last_access, ?) WHERE digest = ?", updates
            )
            await self._db.commit()

    async def delete_blobs(self, digests: Iterable[Digest]) -> list[BlobRow]:
        """Delete these rows; returns the ones that existed (whoever deletes first counts)."""
        keys = [str(digest) for digest in digests]
        deleted: list[BlobRow] = []
        async with self._writing:
            for start in range(0, len(keys), DELETE_BATCH):
                batch = keys[start : start + DELETE_BATCH]
                marks = ", ".join("?" * len(batch))
                rows = await self._db.execute_fetchall(
                    f"DELETE FROM blobs WHERE digest IN ({marks}) RETURNING digest, size", batch
                )
                deleted.extend(BlobRow(Digest.parse(d), int(size)) for d, size in rows)
            await self._db.commit()
        return deleted

    # -- purges and statistics --------------------------------------------------------------

    async def forget_tags(self, upstream: str, repo: str, tag: str | None, dry_run: bool) -> int:
        """Forget a repository's tags (or one tag) and, for the whole repository, its links."""
        args: tuple[str, ...]
        if tag is not None:
            where, args = "upstream = ? AND repo = ? AND tag = ?", (upstream, repo, tag)
        else:
            where, args = "upstream = ? AND repo = ?", (upstream, repo)
        async with self._writing:
            tags = await self._scalar(f"SELECT count(*) FROM tags WHERE {where}", args)
            if dry_run:
                return tags
            await self._db.execute(f"DELETE FROM tags WHERE {where}", args)
            if tag is None:
                await self._db.execute("DELETE FROM links WHERE upstream = ? AND repo = ?", args)
            await self._db.commit()
            self._cache.clear()
        return tags

    async def forget_manifest(self, digest: Digest, dry_run: bool) -> Forgotten:
        """Forget a manifest and the tags that point at it (the next pull resolves them)."""
        key = (str(digest),)
        async with self._writing:
            manifests = await self._scalar("SELECT count(*) FROM manifests WHERE digest = ?", key)
            tags = await self._scalar("SELECT count(*) FROM tags WHERE digest = ?", key)
            if not dry_run:
                await self._db.execute("DELETE FROM tags WHERE digest = ?", key)
                await self._db.execute("DELETE FROM manifests WHERE digest = ?", key)
                await self._db.commit()
                self._cache.clear()
        return Forgotten(tags=tags, manifests=manifests)

    async def forget_all(self, dry_run: bool) -> Forgotten:
        """Forget every tag, manifest and link (blob rows go through the blob keeper)."""
        async with self._writing:
            tags = await self._scalar("SELECT count(*) FROM tags")
            manifests = await self._scalar("SELECT count(*) FROM manifests")
            if not dry_run:
                for table in ("tags", "manifests", "links"):
                    await self._db.execute(f"DELETE FROM {table}")
                await self._db.commit()
                self._cache.clear()
        return Forgotten(tags=tags, manifests=manifests)

    async def count(self, table: str, upstream: str | None = None) -> int:
        assert table in TABLES
        if upstream is None:
            return await self._scalar(f"SELECT count(*) FROM {table}")
        return await self._scalar(f"SELECT count(*) FROM {table} WHERE upstream = ?", (upstream,))
