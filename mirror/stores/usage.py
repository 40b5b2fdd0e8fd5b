"""What a replica used lately: the tags its clients pulled and every digest those pulls reach.

Replicas on one bucket each see only their own clients. Before retention or eviction removes
anything from the shared bucket, each replica publishes its `Usage` (s3_usage.py) and reads the
others': a tag or digest another replica used within `max_unused_age` stays (stores/sweep.py),
and eviction orders the bucket's blobs by their last use on any replica
(upkeep/bucket_eviction.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from mirror.stores.graph import Query, closure
from mirror.stores.shared_records import TagKey


@dataclass(slots=True)
class Usage:
    """Last use by time: tags (pulled by name) and digests (manifests and blobs pulled, or
    reached by what was pulled: an image's layers are in use while its tag is)."""

    tags: dict[TagKey, float] = field(default_factory=dict)
    digests: dict[str, float] = field(default_factory=dict)
    # What pinned and locked tags reach (storage.pinned, bundle imports): never evicted.
    pinned: set[str] = field(default_factory=set)
    # Objects the replica doomed and will delete after the grace: no longer counted against
    # the bound by whichever replica evicts next.
    doomed: set[str] = field(default_factory=set)

    def merge(self, other: Usage) -> None:
        for tag, when in other.tags.items():
            self.tags[tag] = max(when, self.tags.get(tag, -math.inf))
        for digest, when in other.digests.items():
            self.digests[digest] = max(when, self.digests.get(digest, -math.inf))
        self.pinned |= other.pinned
        self.doomed |= other.doomed

    def clamp(self, latest: float) -> None:
        """No use later than `latest` (the report's own time): a report cannot keep anything
        beyond the moment it was written."""
        for tag, when in self.tags.items():
            self.tags[tag] = min(when, latest)
        for digest, when in self.digests.items():
            self.digests[digest] = min(when, latest)

    def last_use(self, digest: str) -> float:
        return self.digests.get(digest, -math.inf)

    def tag_used(self, key: TagKey, since: float) -> bool:
        return self.tags.get(key, -math.inf) >= since

    def digest_used(self, digest: str, since: float) -> bool:
        return self.digests.get(digest, -math.inf) >= since

    def as_json(self) -> dict[str, Any]:
        return {
            "tags": [[*key, when] for key, when in sorted(self.tags.items())],
            "digests": dict(sorted(self.digests.items())),
            "pinned": sorted(self.pinned),
            "doomed": sorted(self.doomed),
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> Usage:
        """ValueError, KeyError or TypeError when the document is not a usage report."""
        usage = cls()
        for upstream, repo, tag, when in document["tags"]:
            usage.tags[(str(upstream), str(repo), str(tag))] = _time(when)
        digests = document["digests"]
        if not isinstance(digests, dict):
            raise TypeError("digests is not an object")
        for digest, when in digests.items():
            usage.digests[str(digest)] = _time(when)
        usage.pinned = _digests(document, "pinned")
        usage.doomed = _digests(document, "doomed")
        return usage


def _digests(document: Mapping[str, Any], name: str) -> set[str]:
    listed = document.get(name, [])  # absent in reports of older replicas
    if not isinstance(listed, list):
        raise TypeError(f"{name} is not a list")
    return {str(digest) for digest in listed}


def _time(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a time: {value!r}")
    return float(value)


async def recent_usage(rows: Query, since: float, now: float) -> Usage:
    """This replica's usage since `since`, from its index (pull times as last flushed).
    A locked tag (a bundle import: retention leaves it alone) is in use `now`, pulled or not,
    so that no other replica removes what it reaches from the bucket."""
    usage = Usage()
    roots: dict[str, float] = {}
    tags = await rows(
        "SELECT upstream, repo, tag, digest,"
        " CASE WHEN locked THEN ?"
        " ELSE coalesce(pulled_at, fetched_at) END FROM tags"
        " WHERE locked OR coalesce(pulled_at, fetched_at) >= ?",
        (now, since),
    )
    for upstream, repo, tag, digest, when in tags:
        usage.tags[(upstream, repo, tag)] = float(when)
        roots[digest] = max(float(when), roots.get(digest, -math.inf))
    links = await rows(
        "SELECT digest, max(pulled_at) FROM links WHERE pulled_at >= ? GROUP BY digest", (since,)
    )
    for digest, when in links:
        roots[digest] = max(float(when), roots.get(digest, -math.inf))
    _, edges = await closure(rows, set(roots))
    usage.digests = _spread(roots, edges)
    for digest, when in await rows(
        "SELECT digest, last_access FROM blobs WHERE last_access >= ?", (since,)
    ):
        usage.digests[digest] = max(float(when), usage.digests.get(digest, -math.inf))
    return usage


def _spread(roots: Mapping[str, float], edges: Mapping[str, Iterable[str]]) -> dict[str, float]:
    """Each digest the roots reach, at the latest time of a root that reaches it: roots in
    descending time, each node kept at its first visit (no later root can be more recent)."""
    times: dict[str, float] = {}
    for root, when in sorted(roots.items(), key=lambda item: -item[1]):
        stack = [root]
        while stack:
            digest = stack.pop()
            if digest in times:
                continue
            times[digest] = when
            stack.extend(edges.get(digest, ()))
    return times


@dataclass(slots=True)
class Reports:
    """What the other replicas' reports say, merged, with what eviction needs besides."""

    usage: Usage
    # Replicas whose report, written since the grace began, says they evict (max_size set):
    # the one with the lowest id acts.
    evictors: set[str] = field(default_factory=set)


class UsageBoard(Protocol):
    """Where replicas on one bucket leave their usage for each other (s3_usage.py)."""

    # What this replica's report says: it evicts, and could at its last attempt.
    evicts: bool

    @property
    def replica(self) -> str: ...

    async def publish(self, usage: Usage, now: float) -> float | None:
        """Write this replica's report; the bucket's clock minus this replica's (from the
        answer's Date), or None when the bucket did not take it."""
        ...

    async def others(
        self, now: float, stale_before: float, live_after: float, doomed_after: float
    ) -> Reports | None: ...
