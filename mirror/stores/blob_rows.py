"""The blobs table: one row per stored blob (its size, when it was stored and last read).

A blob's row is written before its file appears (BlobKeeper.admit), so put_blob raises
StorageFull on a full disk instead of keeping the row in memory as tags and manifests do.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from mirror.reference import Digest
from mirror.stores.database import Database, Statements
from mirror.stores.records import BlobRow

DELETE_BATCH = 500  # digests per DELETE … IN (…): well under SQLite's variable limit


async def delete_rows(db: aiosqlite.Connection, keys: list[str]) -> list[BlobRow]:
    """In a transaction: delete these blobs' rows; the ones that existed."""
    deleted: list[BlobRow] = []
    for start in range(0, len(keys), DELETE_BATCH):
        batch = keys[start : start + DELETE_BATCH]
        marks = ", ".join("?" * len(batch))
        rows = await db.execute_fetchall(
            f"DELETE FROM blobs WHERE digest IN ({marks}) RETURNING digest, size", batch
        )
        deleted.extend(BlobRow(Digest.parse(d), int(size)) for d, size in rows)
    return deleted


class BlobRows:
    """Metadata's blob methods (Metadata is the one object that holds the connection)."""

    _db: Database

    async def _remember(self, what: str, statements: Statements[None]) -> None:
        raise NotImplementedError  # Metadata's: a record kept in memory when the disk is full

    async def put_blob(self, digest: Digest, size: int, now: float) -> bool:
        """Record a stored blob; False when a row for it existed already (then refreshed).
        Raises StorageFull when the disk is full."""
        key = str(digest)

        async def statements(db: aiosqlite.Connection) -> bool:
            cursor = await db.execute(
                "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)", (key, size, now, now)
            )
            inserted = cursor.rowcount == 1
            await cursor.close()
            if not inserted:
                await db.execute(
                    "UPDATE blobs SET size = ?, last_access = ? WHERE digest = ?", (size, now, key)
                )
            return inserted

        return await self._db.write(statements)

    async def blob_row(self, digest: Digest) -> BlobRow | None:
        rows = await self._db.rows("SELECT size FROM blobs WHERE digest = ?", (str(digest),))
        return BlobRow(digest, int(rows[0][0])) if rows else None

    async def blob_rows(self) -> list[BlobRow]:
        rows = await self._db.rows("SELECT digest, size FROM blobs")
        return [BlobRow(Digest.parse(digest), int(size)) for digest, size in rows]

    async def blobs_by_last_access(self) -> list[BlobRow]:
        """Every stored blob, least recently used first (the eviction order)."""
        rows = await self._db.rows(
            "SELECT digest, size FROM blobs ORDER BY last_access, created_at"
        )
        return [BlobRow(Digest.parse(digest), int(size)) for digest, size in rows]

    async def touch_blobs(self, accessed: Iterable[tuple[Digest, float]]) -> None:
        """Write a batch of last-access times (the janitor flushes them periodically)."""
        updates = [(when, str(digest)) for digest, when in accessed]

        async def statements(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "UPDATE blobs SET last_access = max(last_access, ?) WHERE digest = ?", updates
            )

        await self._remember("last-access times", statements)

    async def delete_blobs(self, digests: Iterable[Digest]) -> list[BlobRow]:
        """Delete these rows; returns the ones that existed (whoever deletes first counts)."""
        keys = [str(digest) for digest in digests]

        async def statements(db: aiosqlite.Connection) -> list[BlobRow]:
            return await delete_rows(db, keys)

        return await self._db.write(statements, frees_space=True)
