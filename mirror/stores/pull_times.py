"""When clients last pulled tags and manifests: kept in memory, written to SQLite in batches."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiosqlite

from mirror.reference import Digest

TagKey = tuple[str, str, str]  # (upstream, repo, tag)
LinkKey = tuple[str, str, Digest]  # (upstream, repo, manifest digest)


@dataclass(slots=True)
class PullTimes:
    """A pull only updates a dict here (no SQLite on the path of a hit); the janitor's flush
    writes the batch. The catalog reads what was flushed, so a pull is seen there one flush
    interval later at most; retention also spares what is still only here (`unflushed`)."""

    tags: dict[TagKey, float] = field(default_factory=dict)
    manifests: dict[LinkKey, float] = field(default_factory=dict)

    def pulled(
        self, upstream: str, repo: str, tag: str | None, digest: Digest, when: float
    ) -> None:
        if tag is not None:
            self.tags[(upstream, repo, tag)] = when
        self.manifests[(upstream, repo, digest)] = when

    def unflushed(self) -> tuple[set[TagKey], set[tuple[str, str, str]]]:
        """The tags, and manifests in repositories (digests as text), pulled since the last
        flush: pulls the index does not show yet."""
        links = {(upstream, repo, str(digest)) for upstream, repo, digest in self.manifests}
        return set(self.tags), links

    def take_statements(self) -> Callable[[aiosqlite.Connection], Awaitable[None]] | None:
        """The batch so far as one transaction's statements (None when empty); the batch
        starts anew."""
        tags, manifests = self.tags, self.manifests
        if not tags and not manifests:
            return None
        self.tags, self.manifests = {}, {}

        async def statements(db: aiosqlite.Connection) -> None:
            # UPDATE only: a pull must not bring back a row a purge removed meanwhile.
            await db.executemany(
                "UPDATE tags SET pulled_at = max(coalesce(pulled_at, 0), ?)"
                " WHERE upstream = ? AND repo = ? AND tag = ?",
                [(when, *key) for key, when in tags.items()],
            )
            await db.executemany(
                "UPDATE links SET pulled_at = max(coalesce(pulled_at, 0), ?)"
                " WHERE upstream = ? AND repo = ? AND digest = ?",
                [(when, up, repo, str(digest)) for (up, repo, digest), when in manifests.items()],
            )

        return statements
