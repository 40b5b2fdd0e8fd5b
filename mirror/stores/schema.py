"""The SQLite schema, as migrations: each moves a database file one version up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiosqlite

from mirror.errors import SchemaTooNew
from mirror.manifest_refs import referenced_digests

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
    """
    -- What each stored manifest points at (config, layers, child manifests, subject): the
    -- graph a purge or retention walks to free what only the removed images held.
    CREATE TABLE refs (
        parent TEXT NOT NULL,
        child TEXT NOT NULL,
        PRIMARY KEY (parent, child)
    ) WITHOUT ROWID;
    CREATE INDEX refs_by_child ON refs (child);
    -- When a client last pulled a tag, and a manifest by digest in a repository (NULL: the
    -- link was only recorded as a reference). Written in batches, like blobs' last_access.
    ALTER TABLE tags ADD COLUMN pulled_at REAL;
    ALTER TABLE links ADD COLUMN pulled_at REAL;
    UPDATE tags SET pulled_at = fetched_at;
    UPDATE links SET pulled_at = (SELECT created_at FROM manifests WHERE digest = links.digest);
    """,
    """
    -- 1: a tag imported from a bundle, what an air-gapped site chose: retention and eviction
    -- pass it (and all it reaches) by; only a purge removes it.
    ALTER TABLE tags ADD COLUMN locked INTEGER NOT NULL DEFAULT 0;
    -- Purges, the catalog and retention look links up by digest.
    CREATE INDEX links_by_digest ON links (digest);
    """,
    """
    -- Objects retention removed from a shared bucket, deleted only once a grace period has
    -- passed with no replica reporting a read of them (upkeep/bucket_retention.py).
    CREATE TABLE doomed (
        digest TEXT PRIMARY KEY,
        since REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    """
    -- Eviction dooms objects too (upkeep/bucket_eviction.py), with the last use it knew
    -- of: a use reported later keeps the object. NULL (retention): a use reported within
    -- max_unused_age keeps it.
    ALTER TABLE doomed ADD COLUMN used_at REAL;
    """,
)


async def _backfill_refs(db: aiosqlite.Connection) -> None:
    """Schema 2: the references of manifests stored before refs existed."""
    last = 0
    while True:  # in pages, so a large index is not read into memory at once
        page = await db.execute_fetchall(
            "SELECT rowid, digest, body FROM manifests WHERE rowid > ? ORDER BY rowid LIMIT 500",
            (last,),
        )
        if not page:
            return
        pairs = [
            (digest, str(child)) for _, digest, body in page for child in referenced_digests(body)
        ]
        await db.executemany("INSERT OR IGNORE INTO refs VALUES (?, ?)", pairs)
        last = int(list(page)[-1][0])


# Work a migration needs beyond SQL, run in the same transaction, by the version it reaches.
BACKFILLS: dict[int, Callable[[aiosqlite.Connection], Awaitable[None]]] = {2: _backfill_refs}


async def migrate(db: aiosqlite.Connection) -> None:
    """Bring a database file up to the newest schema, one transaction per step. A file ahead
    of these migrations (written by a newer mirror) is refused, never read or written."""
    rows = await db.execute_fetchall("PRAGMA user_version")
    version = int(next(iter(rows))[0]) if rows else 0
    if version > len(MIGRATIONS):
        files = await db.execute_fetchall("PRAGMA database_list")
        path = next((row[2] for row in files if row[1] == "main"), "the index")
        raise SchemaTooNew(path, version, len(MIGRATIONS))
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        # executescript commits what is pending and then runs the script as written: the
        # BEGIN keeps the script, its backfill and the new version in one transaction.
        await db.executescript(f"BEGIN; {script}")
        backfill = BACKFILLS.get(number)
        if backfill is not None:
            await backfill(db)
        await db.execute(f"PRAGMA user_version = {number}")
        await db.commit()
