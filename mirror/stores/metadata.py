"""The local side's index in SQLite: tags as resolved, manifests by digest, blobs, repo links.

The index's SQL lives in the stores package: here, and beside it in blob_rows.py (the blobs
table, whose methods Metadata has), sweep.py (purges and retention by the reference graph),
catalog.py (read-only listings), pull_times.py (batched pull times) and schema.py. Reads run
as one `execute_fetchall` call, so no cursor stays open across an await; writes run one
transaction at a time (stores/database.py).

Tags, manifests and links are records of what was fetched: when the disk is full they stay
in the read cache only (served by this process, fetched again after a restart). A blob row
must be written before its file appears, so put_blob raises StorageFull instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import aiosqlite

from mirror.errors import StorageFull
from mirror.reference import Digest
from mirror.stores.blob_rows import BlobRows
from mirror.stores.database import Database, Statements
from mirror.stores.disk_space import DiskSpace
from mirror.stores.pull_times import PullTimes
from mirror.stores.read_cache import ReadCache
from mirror.stores.records import Forgotten, StoredManifest, TagRow

log = logging.getLogger(__name__)

TABLES = ("tags", "manifests", "blobs", "links", "refs")
T = TypeVar("T")


class Metadata(BlobRows):
    """One long-lived aiosqlite connection in WAL mode, and the read cache in front of it."""

    def __init__(self, path: Path, disk: DiskSpace) -> None:
        self._db = Database(path, disk)
        # What hits read, kept in memory; every write updates it inside its transaction, so
        # a purge that clears it cannot be undone by a write finishing late.
        self._cache = ReadCache()
        self._pulls = PullTimes()

    @property
    def database(self) -> Database:
        """For read-only views over the index (the catalog); writes go through Metadata."""
        return self._db

    async def open(self) -> None:
        await self._db.open()

    async def close(self) -> None:
        await self._db.close()

    async def _remember(self, what: str, statements: Statements[None]) -> None:
        """A record of fetched content: on a full disk it lives on in the read cache only."""
        try:
            await self._db.write(statements)
        except StorageFull:
            log.warning("disk full: %s kept in memory only", what)

    async def ping(self) -> None:
        """Fails when the database is not usable (readiness)."""
        await self._db.rows("SELECT 1")

    # -- tags -------------------------------------------------------------------------------

    async def get_tag(self, upstream: str, repo: str, tag: str) -> TagRow | None:
        key = (upstream, repo, tag)
        cached = self._cache.tags.get(key)
        if cached is not None:
            return cached
        generation = self._cache.generation
        rows = await self._db.rows(
            "SELECT digest, media_type, fetched_at FROM tags"
            " WHERE upstream = ? AND repo = ? AND tag = ?",
            key,
        )
        if not rows:
            return None
        digest, media_type, resolved_at = rows[0]
        found = TagRow(Digest.parse(digest), media_type, float(resolved_at))
        if self._cache.generation == generation:
            self._cache.put_tag(key, found)
        return found

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
    ) -> None:
        """Record a resolution. `fetched_at` is what this version reads; `expires_at` (the
        resolution plus the TTL of the time) is written only for an older version that might
        open the folder after a downgrade, and is never read here. A `locked` tag (imported
        from a bundle: what an air-gapped site chose) is never aged out nor evicted; only a
        purge removes it."""

        async def statements(db: aiosqlite.Connection) -> None:
            values = (str(row.digest), row.media_type, row.resolved_at, row.resolved_at + ttl)
            # A new tag counts as pulled when resolved (retention must not take it before its
            # first batch of pull times is flushed); a re-resolution keeps its pull time.
            await db.execute(
                "INSERT INTO tags (upstream, repo, tag, digest, media_type, fetched_at,"
                " expires_at, pulled_at, locked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT DO UPDATE SET digest = excluded.digest,"
                " media_type = excluded.media_type, fetched_at = excluded.fetched_at,"
                " expires_at = excluded.expires_at, locked = max(locked, excluded.locked)",
                (upstream, repo, tag, *values, pulled_at or row.resolved_at, int(locked)),
            )
            self._cache.put_tag((upstream, repo, tag), row)

        await self._remember(f"tag {repo}:{tag}", statements)

    async def list_tags(self, upstream: str, repo: str) -> list[str]:
        rows = await self._db.rows(
            "SELECT tag FROM tags WHERE upstream = ? AND repo = ? ORDER BY tag", (upstream, repo)
        )
        return [str(row[0]) for row in rows]

    # -- manifests --------------------------------------------------------------------------

    async def get_manifest(self, digest: Digest) -> StoredManifest | None:
        cached = self._cache.manifest(digest)
        if cached is not None:
            return cached
        generation = self._cache.generation
        rows = await self._db.rows(
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
        """Store a verified manifest, what it references, and link both to the repository."""
        children = sorted({str(digest) for digest in references})
        links = [(upstream, repo, digest) for digest in {manifest.digest, *references}]

        async def statements(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT OR IGNORE INTO manifests VALUES (?, ?, ?, ?)",
                (str(manifest.digest), manifest.media_type, manifest.body, now),
            )
            await db.executemany(
                "INSERT OR IGNORE INTO refs VALUES (?, ?)",
                [(str(manifest.digest), child) for child in children],
            )
            await db.executemany(
                "INSERT OR IGNORE INTO links (upstream, repo, digest) VALUES (?, ?, ?)",
                [(up, name, str(digest)) for up, name, digest in links],
            )
            self._cache.put_manifest(manifest)
            for link in links:
                self._cache.add_link(link)

        await self._remember(f"manifest {manifest.digest}", statements)

    # -- links ------------------------------------------------------------------------------

    async def is_referenced(self, digest: Digest) -> bool:
        """Whether a stored manifest points at this digest (a layer, a config, a child)."""
        rows = await self._db.rows("SELECT 1 FROM refs WHERE child = ? LIMIT 1", (str(digest),))
        return bool(rows)

    async def has_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        key = (upstream, repo, digest)
        if key in self._cache.links:
            return True
        generation = self._cache.generation
        found = bool(
            await self._db.rows(
                "SELECT 1 FROM links WHERE upstream = ? AND repo = ? AND digest = ?",
                (upstream, repo, str(digest)),
            )
        )
        if found and self._cache.generation == generation:
            self._cache.add_link(key)
        return found

    async def add_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        """Record a link; False when it was known already (no write: this runs on every
        revalidation)."""
        key = (upstream, repo, digest)
        if key in self._cache.links:
            return False

        async def statements(db: aiosqlite.Connection) -> None:
            await db.execute(
                "INSERT OR IGNORE INTO links (upstream, repo, digest) VALUES (?, ?, ?)",
                (upstream, repo, str(digest)),
            )
            self._cache.add_link(key)

        await self._remember(f"link {repo}@{digest}", statements)
        return True

    # -- pulls ------------------------------------------------------------------------------

    def record_pull(
        self, upstream: str, repo: str, tag: str | None, digest: Digest, when: float
    ) -> None:
        """A client pulled a manifest (by tag, or by digest when `tag` is None): in memory."""
        self._pulls.pulled(upstream, repo, tag, digest, when)

    @property
    def pulls(self) -> PullTimes:
        """Pulls not yet flushed: retention spares them (stores/sweep.py)."""
        return self._pulls

    async def flush_pulls(self) -> None:
        """Write the batched pull times of tags and of manifests in their repositories."""
        statements = self._pulls.take_statements()
        if statements is not None:
            await self._remember("pull times", statements)

    # -- purges (by image: stores/sweep.py) and statistics ---------------------------------------

    async def purge(self, statements: Statements[T]) -> T:
        """Run a purge's statements (stores/sweep.py) as one transaction that may free space.
        The read cache is cleared inside it, so no hit serves what it removed, and a read that
        began before does not cache what it found."""

        async def purging(db: aiosqlite.Connection) -> T:
            result = await statements(db)
            self._cache.clear()
            return result

        return await self._db.write(purging, frees_space=True)

    async def forget_all(self, dry_run: bool) -> Forgotten:
        """Forget every tag, manifest and link (blob rows go through the blob keeper)."""

        async def statements(db: aiosqlite.Connection) -> Forgotten:
            tags = await self._db.scalar("SELECT count(*) FROM tags")
            manifests = await self._db.scalar("SELECT count(*) FROM manifests")
            if not dry_run:
                for table in ("tags", "manifests", "links", "refs"):
                    await db.execute(f"DELETE FROM {table}")
                self._cache.clear()
            return Forgotten(tags=tags, manifests=manifests)

        return await self._db.write(statements, frees_space=True)

    async def count(self, table: str, upstream: str | None = None) -> int:
        assert table in TABLES
        if upstream is None:
            return await self._db.scalar(f"SELECT count(*) FROM {table}")
        return await self._db.scalar(
            f"SELECT count(*) FROM {table} WHERE upstream = ?", (upstream,)
        )
