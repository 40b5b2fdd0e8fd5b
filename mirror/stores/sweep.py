"""Sweeps: remove what purged or aged-out tags and links held, and nothing something else holds.

A sweep starts from a *selection*: the tags and links that go, and the digests they held. The
candidates are those digests closed over `refs` (an index's child manifests, each manifest's
config and layers). A candidate survives when

- a tag that stays points at it,
- a link that stays protects it (a purge: any link of a repository outside its scope; retention:
  a manifest pulled by digest within max_unused_age, or any link in a pinned repository),
- a manifest outside the candidates references it (a shared base layer, a child of another index),
- a surviving candidate references it (to a fixed point), or
- (retention) it is a blob read within max_unused_age.

Explicit targets (the manifest of a manifest purge) go whatever holds them. Everything else among
the candidates goes: tags, manifest rows and their refs, blob rows, and every link to a removed
digest, all in one transaction (Metadata.purge). A dry run computes the same and deletes nothing.
Blob files follow the deleted rows through BlobKeeper.forget, once readers let go.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiosqlite

from mirror.reference import Digest
from mirror.stores.graph import Query, closure, select_in
from mirror.stores.metadata import Metadata
from mirror.stores.pins import Pins
from mirror.stores.records import BlobRow
from mirror.stores.shared_records import LinkKey, TagKey
from mirror.stores.usage import Usage

# Whether a link that stays keeps its digest: (upstream, repo, pulled_at) → bool.
LinkRule = Callable[[str, str, float | None], bool]


@dataclass(frozen=True, slots=True)
class Swept:
    """What a sweep removed (or, in a dry run, would remove)."""

    tags: int = 0
    manifests: tuple[str, ...] = ()
    blobs: tuple[BlobRow, ...] = ()
    # The tags and links removed, for the bucket's records (a dry run names none).
    tag_keys: tuple[TagKey, ...] = ()
    link_keys: tuple[LinkKey, ...] = ()

    @property
    def bytes(self) -> int:
        return sum(row.size for row in self.blobs)


@dataclass(slots=True)
class Selection:
    """Where a sweep starts: what goes outright, and which links keep content."""

    tags: list[tuple[str, str, str, str]] = field(default_factory=list)  # (…, tag, digest)
    links: list[LinkKey] = field(default_factory=list)
    seeds: set[str] = field(default_factory=set)  # held by those tags and links, or orphans
    explicit: set[str] = field(default_factory=set)
    link_keeps: LinkRule = lambda upstream, repo, pulled_at: False
    kept: Callable[[str], bool] = lambda digest: False  # (retention) used by another replica
    read_since: float | None = None  # blobs read at or after this stay

    def starts(self) -> set[str]:
        return self.seeds | self.explicit | {row[3] for row in self.tags}


class Sweeper:
    """The purges by image and retention's sweep; the only SQL that removes by the graph."""

    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    async def repository(self, upstream: str, repo: str, tag: str | None, dry_run: bool) -> Swept:
        """A repository (its tags and every link it has) or one of its tags."""

        async def select(db: aiosqlite.Connection) -> Selection:
            args: tuple[str, ...]
            where, args = "upstream = ? AND repo = ?", (upstream, repo)
            if tag is not None:
                where, args = f"{where} AND tag = ?", (upstream, repo, tag)
            tags = await db.execute_fetchall(
                f"SELECT upstream, repo, tag, digest FROM tags WHERE {where}", args
            )
            selection = Selection(tags=[(u, r, t, d) for u, r, t, d in tags])
            if tag is None:
                links = await db.execute_fetchall(
                    "SELECT upstream, repo, digest FROM links WHERE upstream = ? AND repo = ?",
                    (upstream, repo),
                )
                selection.links = [(u, r, d) for u, r, d in links]
                selection.seeds = {row[2] for row in selection.links}
            selection.link_keeps = lambda up, name, _: (up, name) != (upstream, repo)
            return selection

        return await self._sweep(select, dry_run)

    async def manifest(self, digest: Digest, dry_run: bool) -> Swept:
        """A manifest in every repository, the tags that point at it, and what only it held."""
        key = str(digest)

        async def select(db: aiosqlite.Connection) -> Selection:
            tags = await db.execute_fetchall(
                "SELECT upstream, repo, tag, digest FROM tags WHERE digest = ?", (key,)
            )
            return Selection(tags=[(u, r, t, d) for u, r, t, d in tags], explicit={key})

        return await self._sweep(select, dry_run)

    async def unused(
        self,
        cutoff: float,
        pins: Pins,
        elsewhere: Usage | None = None,
        doom_at: float | None = None,
    ) -> Swept:
        """Retention: tags and by-digest pulls last pulled before `cutoff` (pins excepted),
        and blobs no manifest references, read before it. `elsewhere`: what other replicas on
        the bucket used (kept if since `cutoff`). `doom_at`: the blobs removed are recorded as
        doomed (their objects deleted after a grace period), in the same transaction."""
        others = elsewhere or Usage()

        async def select(db: aiosqlite.Connection) -> Selection:
            selection = Selection(read_since=cutoff)
            selection.kept = lambda digest: others.digest_used(digest, cutoff)
            rows = await db.execute_fetchall(
                "SELECT upstream, repo, tag, digest FROM tags"
                " WHERE coalesce(pulled_at, fetched_at) < ? AND NOT locked",
                (cutoff,),
            )
            rows_links = await db.execute_fetchall(
                "SELECT upstream, repo, digest FROM links WHERE pulled_at < ?", (cutoff,)
            )
            # Decided after the last await of the selection: a pull the janitor's flush did
            # not write yet (it landed after it) spares its tag and manifest.
            pulled_tags, pulled_links = self._metadata.pulls.unflushed()
            selection.tags = [
                (u, r, t, d)
                for u, r, t, d in rows
                if not pins.tag(u, r, t)
                and (u, r, t) not in pulled_tags
                and not others.tag_used((u, r, t), cutoff)
            ]
            selection.links = [
                (u, r, d)
                for u, r, d in rows_links
                if not pins.repository(u, r)
                and (u, r, d) not in pulled_links
                and not others.digest_used(d, cutoff)
            ]
            selection.seeds = {link[2] for link in selection.links}
            orphans = await db.execute_fetchall(
                "SELECT digest FROM blobs WHERE last_access < ?"
                " AND NOT EXISTS (SELECT 1 FROM refs WHERE child = blobs.digest)"
                " UNION SELECT digest FROM manifests WHERE created_at < ?"
                " AND NOT EXISTS (SELECT 1 FROM refs WHERE child = manifests.digest)"
                " AND NOT EXISTS (SELECT 1 FROM tags WHERE digest = manifests.digest)"
                " AND NOT EXISTS (SELECT 1 FROM links WHERE digest = manifests.digest)",
                (cutoff, cutoff),
            )
            selection.seeds |= {row[0] for row in orphans}
            # A by-digest pull within the age keeps its manifest; so does a pinned repository.
            selection.link_keeps = lambda up, name, pulled: (
                pulled is not None or pins.repository(up, name)
            )
            return selection

        return await self._sweep(select, dry_run=False, doom_at=doom_at)

    async def pinned(self, pins: Pins) -> set[Digest]:
        """Everything pinned and locked tags (and pinned repositories' by-digest pulls) reach:
        what eviction must pass by."""
        rows = self._metadata.database.rows
        roots = {str(d) for (d,) in await rows("SELECT digest FROM tags WHERE locked")}
        if not pins and not roots:
            return set()
        roots |= {d for u, r, t, d in await rows(TAGS) if pins.tag(u, r, t)}
        pulled = await rows("SELECT upstream, repo, digest FROM links WHERE pulled_at NOT NULL")
        roots |= {d for u, r, d in pulled if pins.repository(u, r)}
        reached, _ = await closure(rows, roots)
        return {Digest.parse(digest) for digest in reached}

    async def _sweep(
        self,
        select: Callable[[aiosqlite.Connection], Awaitable[Selection]],
        dry_run: bool,
        doom_at: float | None = None,
    ) -> Swept:
        async def statements(db: aiosqlite.Connection) -> Swept:
            selection = await select(db)
            query: Query = db.execute_fetchall
            removed = await doomed(query, selection)
            manifests = await select_in(query, "SELECT digest FROM manifests WHERE digest", removed)
            blobs = await select_in(query, "SELECT digest, size FROM blobs WHERE digest", removed)
            tag_keys: tuple[TagKey, ...] = ()
            link_keys: set[LinkKey] = set()
            if not dry_run:
                tag_keys = tuple(row[:3] for row in selection.tags)
                links = "SELECT upstream, repo, digest FROM links WHERE digest"
                found = await select_in(query, links, removed)
                link_keys = {*selection.links, *((str(u), str(r), str(d)) for u, r, d in found)}
                if doom_at is not None:
                    later = [(str(digest), doom_at) for digest, _ in blobs]
                    await db.executemany(
                        "INSERT OR REPLACE INTO doomed (digest, since) VALUES (?, ?)", later
                    )
                await _delete(db, selection, removed)
            return Swept(
                tags=len(selection.tags),
                manifests=tuple(sorted(row[0] for row in manifests)),
                blobs=tuple(BlobRow(Digest.parse(d), int(size)) for d, size in sorted(blobs)),
                tag_keys=tag_keys,
                link_keys=tuple(sorted(link_keys)),
            )

        return await self._metadata.purge(statements)


TAGS = "SELECT upstream, repo, tag, digest FROM tags"


async def doomed(query: Query, selection: Selection) -> set[str]:
    """The candidates (the selection's digests closed over refs) that nothing keeps."""
    candidates, edges = await closure(query, selection.starts())
    gone_tags = {row[:3] for row in selection.tags}
    gone_links = set(selection.links)
    kept: set[str] = set()
    for up, repo, tag, digest in await select_in(query, f"{TAGS} WHERE digest", candidates):
        if (up, repo, tag) not in gone_tags:
            kept.add(digest)
    links = "SELECT upstream, repo, digest, pulled_at FROM links WHERE digest"
    for up, repo, digest, pulled_at in await select_in(query, links, candidates):
        if (up, repo, digest) not in gone_links and selection.link_keeps(up, repo, pulled_at):
            kept.add(digest)
    refs = "SELECT parent, child FROM refs WHERE child"
    for parent, child in await select_in(query, refs, candidates):
        if parent not in candidates:
            kept.add(child)
    kept |= {digest for digest in candidates if selection.kept(digest)}
    if selection.read_since is not None:
        recent = "SELECT digest FROM blobs WHERE last_access >= ? AND digest"
        found = await select_in(query, recent, candidates, (selection.read_since,))
        kept |= {row[0] for row in found}
    # What survives keeps what it references; an explicit target goes, and keeps nothing.
    survivors: set[str] = set()
    stack = [digest for digest in kept if digest not in selection.explicit]
    while stack:
        digest = stack.pop()
        if digest in survivors or digest in selection.explicit:
            continue
        survivors.add(digest)
        stack.extend(edges.get(digest, ()))
    return candidates - survivors


async def _delete(db: aiosqlite.Connection, selection: Selection, removed: set[str]) -> None:
    await db.executemany(
        "DELETE FROM tags WHERE upstream = ? AND repo = ? AND tag = ?",
        [row[:3] for row in selection.tags],
    )
    await db.executemany(
        "DELETE FROM links WHERE upstream = ? AND repo = ? AND digest = ?", selection.links
    )
    for sql in (
        "DELETE FROM links WHERE digest",
        "DELETE FROM refs WHERE parent",
        "DELETE FROM manifests WHERE digest",
        "DELETE FROM blobs WHERE digest",
    ):
        await select_in(db.execute_fetchall, sql, removed)
