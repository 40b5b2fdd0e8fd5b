"""What the cache holds, by repository: a read-only view over the index for `GET /admin/catalog`
and `mirror ls`.

Each query is one `Database.rows` call (one `execute_fetchall`), so no cursor stays open across
an await and a page is one consistent snapshot of the WAL database. Pull times are read as the
janitor last flushed them (stores/pull_times.py): a pull shows here one flush interval later
at most.

Bytes count blobs only (manifests live in the index, not in blob files). A blob is *unique* to
a repository when no other repository (of any upstream) is linked to it, *shared* otherwise;
summed over every repository, unique bytes plus each shared blob once are the blob bytes on
disk that some repository holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mirror.media_types import DOCKER_LIST, OCI_INDEX
from mirror.stores.database import Database

# Separates upstream and repository in a page cursor: a repository name never holds one.
CURSOR_SEPARATOR = ":"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
# BuildKit lists its attestations in an index with this annotation (platform unknown/unknown).
_REFERENCE_TYPE = "vnd.docker.reference.type"

# The page's repositories, then one aggregate per repository over the page only. The page is
# the first ?5 of the first ?5 from each table: both walk their primary key (upstream, repo, …)
# from the cursor, so a page costs about its own size, not a scan of the index. `holders`
# counts the repositories linked to each of the page's digests (links has no index by digest:
# one pass over it). Parameters: ?1 upstream (NULL: all), ?2 prefix, ?3/?4 the cursor
# (upstream, repository; the page starts after it), ?5 the row limit, ?6 an exact repository
# (NULL: any).
_FILTER = """
    (?1 IS NULL OR upstream = ?1)
    AND substr(repo, 1, length(?2)) = ?2
    AND (upstream, repo) > (?3, ?4)
    AND (?6 IS NULL OR repo = ?6)
"""
_SUMMARIES = f"""
WITH page AS (
    SELECT upstream, repo FROM (
        SELECT * FROM (
            SELECT DISTINCT upstream, repo FROM tags WHERE {_FILTER}
            ORDER BY upstream, repo LIMIT ?5
        )
        UNION
        SELECT * FROM (
            SELECT DISTINCT upstream, repo FROM links WHERE {_FILTER}
            ORDER BY upstream, repo LIMIT ?5
        )
    )
    ORDER BY upstream, repo
    LIMIT ?5
),
holders AS (
    SELECT digest, count(*) AS n FROM links
    WHERE digest IN (
        SELECT l.digest FROM page p JOIN links l ON l.upstream = p.upstream AND l.repo = p.repo
    )
    GROUP BY digest
),
sizes AS (
    SELECT l.upstream, l.repo,
        sum(CASE WHEN h.n = 1 THEN b.size ELSE 0 END) AS unique_bytes,
        sum(CASE WHEN h.n > 1 THEN b.size ELSE 0 END) AS shared_bytes,
        max(l.pulled_at) AS pulled
    FROM page p
    JOIN links l ON l.upstream = p.upstream AND l.repo = p.repo
    LEFT JOIN blobs b ON b.digest = l.digest
    LEFT JOIN holders h ON h.digest = l.digest
    GROUP BY l.upstream, l.repo
),
tag_counts AS (
    SELECT t.upstream, t.repo, count(*) AS tags, max(t.pulled_at) AS pulled
    FROM page p JOIN tags t ON t.upstream = p.upstream AND t.repo = p.repo
    GROUP BY t.upstream, t.repo
)
SELECT p.upstream, p.repo, coalesce(c.tags, 0),
    coalesce(s.unique_bytes, 0), coalesce(s.shared_bytes, 0),
    max(coalesce(c.pulled, s.pulled), coalesce(s.pulled, c.pulled))
FROM page p
LEFT JOIN sizes s ON s.upstream = p.upstream AND s.repo = p.repo
LEFT JOIN tag_counts c ON c.upstream = p.upstream AND c.repo = p.repo
ORDER BY p.upstream, p.repo
"""

# A repository's tags; the manifest body only for an index, whose entries name the platforms.
_TAGS = f"""
SELECT t.tag, t.digest, t.media_type, t.fetched_at, t.pulled_at,
    CASE WHEN t.media_type IN ({", ".join("?" * len(INDEX_TYPES))}) THEN m.body END
FROM tags t LEFT JOIN manifests m ON m.digest = t.digest
WHERE t.upstream = ? AND t.repo = ?
ORDER BY t.tag
"""


def rfc3339(when: float | None) -> str | None:
    """A Unix time as an RFC 3339 UTC string ("2026-01-31T12:00:00.250Z"), or None. In
    milliseconds: a pull right after the resolution is a later time, not the same second."""
    if when is None:
        return None
    stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class RepositorySummary:
    upstream: str
    repository: str
    tags: int
    unique_bytes: int
    shared_bytes: int
    last_pulled: float | None  # the latest pull of a tag or of a manifest by digest

    @property
    def cursor(self) -> str:
        """The `last` that starts the next page after this repository."""
        return f"{self.upstream}{CURSOR_SEPARATOR}{self.repository}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "upstream": self.upstream,
            "repository": self.repository,
            "tags": self.tags,
            "bytes": {"unique": self.unique_bytes, "shared": self.shared_bytes},
            "last_pulled": rfc3339(self.last_pulled),
        }


@dataclass(frozen=True, slots=True)
class TagEntry:
    tag: str
    digest: str
    media_type: str
    platforms: list[str] | None  # an index's platforms; None for a single image
    resolved_at: float
    last_pulled: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "tag": self.tag,
            "digest": self.digest,
            "media_type": self.media_type,
            "platforms": self.platforms,
            "resolved_at": rfc3339(self.resolved_at),
            "last_pulled": rfc3339(self.last_pulled),
        }


@dataclass(frozen=True, slots=True)
class RepositoryPage:
    repositories: list[RepositorySummary]
    next: str | None  # the cursor of the last entry when more follow, else None

    def as_dict(self) -> dict[str, Any]:
        return {"repositories": [r.as_dict() for r in self.repositories], "next": self.next}


@dataclass(frozen=True, slots=True)
class RepositoryDetail:
    summary: RepositorySummary
    tags: list[TagEntry]

    def as_dict(self) -> dict[str, Any]:
        return {**self.summary.as_dict(), "tag_list": [t.as_dict() for t in self.tags]}


def parse_cursor(last: str, upstream: str | None) -> tuple[str, str] | None:
    """(upstream, repository) from a `next` cursor; a bare repository name is one of the
    filtered upstream. None when it is neither."""
    name, separator, repo = last.rpartition(CURSOR_SEPARATOR)
    if separator:
        return name, repo
    return None if upstream is None else (upstream, last)


class Catalog:
    """Repositories with their tag counts, bytes and last pull; one repository's tags."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def repositories(
        self,
        limit: int,
        *,
        upstream: str | None = None,
        prefix: str = "",
        after: tuple[str, str] = ("", ""),
    ) -> RepositoryPage:
        """At most `limit` repositories after the cursor `after`, in (upstream, name) order."""
        found = await self._summaries(upstream, prefix, after, limit + 1, None)
        page = found[:limit]
        more = len(found) > limit and bool(page)
        return RepositoryPage(page, page[-1].cursor if more else None)

    async def repository(self, upstream: str, repo: str) -> RepositoryDetail | None:
        """One repository's totals and tags; None when the index knows nothing of it."""
        found = await self._summaries(upstream, "", ("", ""), 1, repo)
        if not found:
            return None
        rows = await self._db.rows(_TAGS, (*INDEX_TYPES, upstream, repo))
        tags = [
            TagEntry(
                tag=str(tag),
                digest=str(digest),
                media_type=str(media_type),
                platforms=None if body is None else platforms_of(bytes(body)),
                resolved_at=float(resolved_at),
                last_pulled=None if pulled_at is None else float(pulled_at),
            )
            for tag, digest, media_type, resolved_at, pulled_at, body in rows
        ]
        return RepositoryDetail(found[0], tags)

    async def _summaries(
        self,
        upstream: str | None,
        prefix: str,
        after: tuple[str, str],
        limit: int,
        exact: str | None,
    ) -> list[RepositorySummary]:
        rows = await self._db.rows(_SUMMARIES, (upstream, prefix, *after, limit, exact))
        return [
            RepositorySummary(
                upstream=str(up),
                repository=str(repo),
                tags=int(tags),
                unique_bytes=int(unique),
                shared_bytes=int(shared),
                last_pulled=None if pulled is None else float(pulled),
            )
            for up, repo, tags, unique, shared, pulled in rows
        ]


def platforms_of(body: bytes) -> list[str]:
    """`os/arch[/variant]` of each image an index lists, in its order (attestations left out).
    A body that is not a readable index lists none."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return []
    entries = document.get("manifests") if isinstance(document, dict) else None
    found: list[str] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        annotations = entry.get("annotations")
        if isinstance(annotations, dict) and _REFERENCE_TYPE in annotations:
            continue
        platform = entry.get("platform")
        if not isinstance(platform, dict):
            continue
        parts = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
        text = "/".join(str(part) for part in parts if isinstance(part, str) and part)
        if text and text not in found:
            found.append(text)
    return found
