"""The SQLite schema, as migrations: each moves a database file one version up."""

from __future__ import annotations

import aiosqlite

from mirror.errors import SchemaTooNew

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
        await db.executescript(f"BEGIN; {script} PRAGMA user_version = {number}; COMMIT;")
