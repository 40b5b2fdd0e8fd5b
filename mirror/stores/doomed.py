"""Objects retention removed from a shared bucket and has not deleted yet (the `doomed` table).

Retention on a bucket that several replicas share removes rows at once but deletes each object
only after a grace period (upkeep/bucket_retention.py), so that a replica whose read of it is
not reported yet is not cut off. The sweep records what it doomed in its own transaction
(stores/sweep.py): a replica that stops meanwhile deletes it after its restart.
"""

from __future__ import annotations

from collections.abc import Iterable

import aiosqlite

from mirror.stores.blob_rows import DELETE_BATCH
from mirror.stores.database import Database


class DoomedObjects:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def due(self, before: float) -> list[str]:
        """Digests doomed before `before`, oldest first."""
        rows = await self._database.rows(
            "SELECT digest FROM doomed WHERE since < ? ORDER BY since", (before,)
        )
        return [str(row[0]) for row in rows]

    async def count(self) -> int:
        return await self._database.scalar("SELECT count(*) FROM doomed")

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
