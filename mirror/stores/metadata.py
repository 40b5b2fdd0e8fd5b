"""The local side's index in SQLite: tags with expiry, manifests by digest, blobs, repo links."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from mirror.stores.read_cache import ReadCache

# Each entry moves the schema one version up; PRAGMA user_version records where a file is.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE tags (
        upstream TEXT NOT NULL,
        repo TEXT NOT NULL,
        tag TEXT NOT NULL,
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        fetched_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        PRIMARY KEY (upstream, repo, tag)
    ) WITHOUT ROWID;
    CREATE TABLE manifests (
        digest TEXT PRIMARY KEY,
        media_type TEXT NOT NULL,
        body BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL,
        last_access REAL NOT NULL
    );
    -- Which repository of which upstream is known to hold a piece of content.
    CREATE TABLE links (
        upstream TEXT NOT NULL,
        repo TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (upstream, repo, digest)
    ) WITHOUT ROWID;
    """,
)


@dataclass(frozen=True, slots=True)
class TagRow:
    digest: str
    media_type: str
    fetched_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class StoredManifest:
    digest: str
    media_type: str
    body: bytes


class Metadata:
    """One long-lived aiosqlite connection in WAL mode."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._db: aiosqlite.Connection | None = None
        # What hits read, kept in memory; whoever writes SQL around these methods clears it.
        self.cache = ReadCache()

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "Metadata.open() was not awaited"
        return self._db

    async def open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._db = await aiosqlite.connect(self._path)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._migrate()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _migrate(self) -> None:
        async with self.db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        version = int(row[0]) if row else 0
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self.db.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")

    # -- tags -------------------------------------------------------------------------------

    async def get_tag(self, upstream: str, repo: str, tag: str) -> TagRow | None:
        key = (upstream, repo, tag)
        cached = self.cache.tags.get(key)
        if cached is not None:
            return cached
        async with self.db.execute(
            "SELECT digest, media_type, fetched_at, expires_at FROM tags"
            " WHERE upstream = ? AND repo = ? AND tag = ?",
            key,
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        found = TagRow(row[0], row[1], row[2], row[3])
        self.cache.put_tag(key, found)
        return found

    async def put_tag(self, upstream: str, repo: str, tag: str, row: TagRow) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO tags VALUES (?, ?, ?, ?, ?, ?, ?)",
            (upstream, repo, tag, row.digest, row.media_type, row.fetched_at, row.expires_at),
        )
        await self.db.commit()
        self.cache.put_tag((upstream, repo, tag), row)

    async def list_tags(self, upstream: str, repo: str) -> list[str]:
        async with self.db.execute(
            "SELECT tag FROM tags WHERE upstream = ? AND repo = ? ORDER BY tag",
            (upstream, repo),
        ) as cursor:
            return [row[0] for row in await cursor.fetchall()]

    # -- manifests --------------------------------------------------------------------------

    async def get_manifest(self, digest: str) -> StoredManifest | None:
        cached = self.cache.manifest(digest)
        if cached is not None:
            return cached
        async with self.db.execute(
            "SELECT media_type, body FROM manifests WHERE digest = ?", (digest,)
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        found = StoredManifest(digest, row[0], bytes(row[1]))
        self.cache.put_manifest(found)
        return found

    async def put_manifest(
        self,
        manifest: StoredManifest,
        now: float,
        upstream: str,
        repo: str,
        references: Iterable[str],
    ) -> None:
        """Store a verified manifest and link it, and all it references, to the repository."""
        await self.db.execute(
            "INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?)",
            (manifest.digest, manifest.media_type, manifest.body, now),
        )
        links = [(upstream, repo, digest) for digest in {manifest.digest, *references}]
        await self.db.executemany("INSERT OR IGNORE INTO links VALUES (?, ?, ?)", links)
        await self.db.commit()
        self.cache.put_manifest(manifest)
        for link in links:
            self.cache.add_link(link)

    # -- blobs and links --------------------------------------------------------------------

    async def has_link(self, upstream: str, repo: str, digest: str) -> bool:
        key = (upstream, repo, digest)
        if key in self.cache.links:
            return True
        async with self.db.execute(
            "SELECT 1 FROM links WHERE upstream = ? AND repo = ? AND digest = ?", key
        ) as cursor:
            found = await cursor.fetchone() is not None
        if found:
            self.cache.add_link(key)
        return found

    async def add_link(self, upstream: str, repo: str, digest: str) -> None:
        key = (upstream, repo, digest)
        if key in self.cache.links:
            return  # already recorded: no write (this runs on every revalidation)
        await self.db.execute("INSERT OR IGNORE INTO links VALUES (?, ?, ?)", key)
        await self.db.commit()
        self.cache.add_link(key)

    async def put_blob(self, digest: str, size: int, now: float) -> bool:
        """Record a stored blob; False when a row for it existed already (then refreshed)."""
        async with self.db.execute(
            "INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)", (digest, size, now, now)
        ) as cursor:
            inserted = cursor.rowcount == 1
        if not inserted:
            await self.db.execute(
                "UPDATE blobs SET size = ?, last_access = ? WHERE digest = ?", (size, now, digest)
            )
        await self.db.commit()
        return inserted

    # -- upkeep (janitor, purge, stats) -------------------------------------------------------

    async def blob_rows(self) -> list[tuple[str, int]]:
        async with self.db.execute("SELECT digest, size FROM blobs") as cursor:
            return [(row[0], int(row[1])) for row in await cursor.fetchall()]

    async def blobs_by_last_access(self) -> list[tuple[str, int]]:
        """Every stored blob, least recently used first (the eviction order)."""
        async with self.db.execute(
            "SELECT digest, size FROM blobs ORDER BY last_access, created_at"
        ) as cursor:
            return [(row[0], int(row[1])) for row in await cursor.fetchall()]

    async def touch_blobs(self, accessed: Iterable[tuple[str, float]]) -> None:
        """Write a batch of last-access times (the janitor flushes them periodically)."""
        await self.db.executemany(
            "UPDATE blobs SET last_access = max(last_access, ?) WHERE digest = ?",
            [(when, digest) for digest, when in accessed],
        )
        await self.db.commit()

    async def delete_blobs(self, digests: Iterable[str]) -> list[tuple[str, int]]:
        """Delete these rows; returns (digest, size) of the ones that existed."""
        deleted: list[tuple[str, int]] = []
        for digest in digests:
            async with self.db.execute(
                "DELETE FROM blobs WHERE digest = ? RETURNING digest, size", (digest,)
            ) as cursor:
                deleted.extend((row[0], int(row[1])) for row in await cursor.fetchall())
        await self.db.commit()
        return deleted

    async def count(self, table: str, upstream: str | None = None) -> int:
        assert table in ("tags", "manifests", "blobs", "links")
        where, args = ("WHERE upstream = ?", (upstream,)) if upstream is not None else ("", ())
        async with self.db.execute(f"SELECT count(*) FROM {table} {where}", args) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def ping(self) -> None:
        """Fails when the database is not usable (readiness)."""
        async with self.db.execute("SELECT 1") as cursor:
            await cursor.fetchone()
