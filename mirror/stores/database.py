"""The index's SQLite connection: reads in one call each, writes one transaction at a time."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from mirror.errors import StorageFull
from mirror.stores.disk_space import DiskSpace
from mirror.stores.schema import migrate

T = TypeVar("T")
Statements = Callable[[aiosqlite.Connection], Awaitable[T]]


class Database:
    """One long-lived aiosqlite connection in WAL mode.

    A read is one `execute_fetchall` call, so no cursor stays open across an await. Every
    write goes through `write`: one task's statements and commit run while no other task
    writes, so a commit never commits another task's half-done statements, and a failed
    transaction is rolled back before the next one starts. A transaction that fails for lack
    of space raises StorageFull; one that frees space (a delete) may first take back the disk
    reserve and try once more.
    """

    def __init__(self, path: Path, disk: DiskSpace) -> None:
        self._path = path
        self._disk = disk
        self._connection: aiosqlite.Connection | None = None
        self._writing = asyncio.Lock()

    @property
    def _db(self) -> aiosqlite.Connection:
        assert self._connection is not None, "Database.open() was not awaited"
        return self._connection

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = await aiosqlite.connect(self._path)
        await self._db.execute("PRAGMA busy_timeout=5000")
        # Migrate (or refuse a newer schema) first, so a refused file is left exactly as it was.
        await migrate(self._db)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()
            self._connection = None

    async def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._db.execute_fetchall(sql, args)]

    async def scalar(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        rows = await self.rows(sql, args)
        return int(rows[0][0] or 0) if rows else 0

    async def write(self, statements: Statements[T], *, frees_space: bool = False) -> T:
        async with self._writing:
            try:
                return await self._attempt(statements)
            except StorageFull:
                if not (frees_space and self._disk.release_reserve()):
                    raise
                return await self._attempt(statements)

    async def _attempt(self, statements: Statements[T]) -> T:
        try:
            result = await statements(self._db)
            await self._db.commit()
        except sqlite3.Error as exc:
            await self._db.rollback()
            if _no_space(exc):
                self._disk.noted_full()
                raise StorageFull("the data folder's disk is full") from None
            raise
        self._disk.noted_write()
        return result


def _no_space(error: sqlite3.Error) -> bool:
    return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or (
        "disk is full" in str(error)
    )
