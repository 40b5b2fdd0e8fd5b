"""What a replica used lately: the tags its clients pulled and every digest those pulls reach.

Replicas on one bucket each see only their own clients. Before retention removes anything from
the shared bucket, each replica publishes its `Usage` (s3_usage.py) and reads the others': a
tag or digest another replica used within `max_unused_age` stays (stores/sweep.py).
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

    def merge(self, other: Usage) -> None:
        for tag, when in other.tags.items():
            self.tags[tag] = max(when, self.tags.get(tag, -math.inf))
        for digest, when in other.digests.items():
            self.digests[digest] = max(when, self.digests.get(digest, -math.inf))

    def tag_used(self, key: TagKey, since: float) -> bool:
        return self.tags.get(key, -math.inf) >= since

    def digest_used(self, digest: str, since: float) -> bool:
        return self.digests.get(digest, -math.inf) >= since

    def as_json(self) -> dict[str, Any]:
        return {
            "tags": [[*key, when] for key, when in sorted(self.tags.items())],
            "digests": dict(sorted(self.digests.items())),
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
        return usage


def _time(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"not a time: {value!r}")
    return float(value)


async def recent_usage(rows: Query, since: float) -> Usage:
    """This replica's usage since `since`, from its index (pull times as last flushed)."""
    usage = Usage()
    roots: dict[str, float] = {}
    tags = await rows(
        "SELECT upstream, repo, tag, digest, coalesce(pulled_at, fetched_at) FROM tags"
        " WHERE coalesce(pulled_at, fetched_at) >= ?",
        (since,),
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


class UsageBoard(Protocol):
    """Where replicas on one bucket leave their usage for each other (s3_usage.py)."""

    async def publish(self, usage: Usage, now: float) -> bool: ...

    async def others(self, now: float, stale_before: float) -> Usage | None: ...
