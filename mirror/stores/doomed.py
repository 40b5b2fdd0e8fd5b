"""Objects removed from a shared bucket's index and not deleted yet (the `doomed` table).

Retention and eviction on a bucket that several replicas share remove rows at once but delete
each object only after a grace period (upkeep/bucket_retention.py), so that a replica whose
read of it is not reported yet is not cut off. What is doomed is recorded in the transaction
that removed its rows (stores/sweep.py, `evict` below): a replica that stops meanwhile deletes
it after its restart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import aiosqlite

from mirror.reference import Digest
from mirror.stores.blob_rows import DELETE_BATCH, delete_rows
from mirror.stores.database import Database
from mirror.stores.records import BlobRow


@dataclass(frozen=True, slots=True)
class Doomed:
    digest: str
    # Eviction: the last use known when it chose the object (a later use keeps it; -inf when
    # no report named it: any use reported keeps it). None: retention's (a use within
    # max_unused_age keeps it).
    used_at: float | None


class DoomedObjects:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def due(self, before: float) -> list[Doomed]:
        """Objects doomed before `before`, oldest first."""
        rows = await self._database.rows(
            "SELECT digest, used_at FROM doomed WHERE since < ? ORDER BY since", (before,)
        )
        return [Doomed(str(d), None if used is None else float(used)) for d, used in rows]

    async def digests(self) -> set[str]:
        return {str(row[0]) for row in await self._database.rows("SELECT digest FROM doomed")}

    async def count(self) -> int:
        return await self._database.scalar("SELECT count(*) FROM doomed")

    async def evict(self, chosen: Sequence[tuple[Digest, float]], now: float) -> list[BlobRow]:
        """Doom these objects (each with the last use eviction knew of) and delete their rows
        here, in one transaction; the rows that existed."""
        if not chosen:
            return []

        async def statements(db: aiosqlite.Connection) -> list[BlobRow]:
            await db.executemany(
                "INSERT OR REPLACE INTO doomed (digest, since, used_at) VALUES (?, ?, ?)",
                [(str(digest), now, used_at) for digest, used_at in chosen],
            )
            return await delete_rows(db, [str(digest) for digest, _ in chosen])

        return await self._database.write(statements, frees_space=True)

    async def drop(self, digests: Iterable[str]) -> None:
        """No longer doomed: deleted, or kept because a replica uses them."""
        batch = sorted(set(digests))
        if not batch:
            return

        async def statements(db: aiosqlite.Connection) -> None:
            for start in range(0, len(batch), DELETE_BATCH):
                part = batch[start : start + DELETE_BATCH]
                marks = ", ".join("?" * len(part))
                await db.execute(f"DELETE FROM doomed WHERE digest IN ({marks})", part)

        await self._database.write(statements, frees_space=True)
