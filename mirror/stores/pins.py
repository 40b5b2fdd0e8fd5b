"""storage.pinned: the tags and repositories that retention and eviction leave alone."""

from __future__ import annotations

import fnmatch
from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pin:
    """One pattern: a repository (every tag, and its by-digest pulls) or a repository's tags."""

    repo: str
    hub_repo: str  # the pattern as Docker Hub names repositories: `alpine` is `library/alpine`
    tag: str | None

    @classmethod
    def parse(cls, pattern: str) -> Pin:
        repo, colon, tag = pattern.partition(":")
        # The registry API's rule (reference.parse_repository), so `alpine` pins what a client
        # pulling `alpine` stores: `library/alpine` on a Docker Hub upstream.
        hub_repo = repo if "/" in repo else f"library/{repo}"
        return cls(repo, hub_repo, tag if colon else None)

    def matches_repo(self, docker_hub: bool, repo: str) -> bool:
        return fnmatch.fnmatchcase(repo, self.hub_repo if docker_hub else self.repo)


class Pins:
    """The parsed `storage.pinned` list, matched against names as the index stores them."""

    def __init__(self, patterns: Sequence[str], docker_hub_upstreams: Collection[str]) -> None:
        self._pins = tuple(Pin.parse(pattern) for pattern in patterns)
        self._hub = frozenset(docker_hub_upstreams)

    def __bool__(self) -> bool:
        return bool(self._pins)

    def tag(self, upstream: str, repo: str, tag: str) -> bool:
        """A pinned tag: its repository is pinned, or a repo:tag pattern names it."""
        hub = upstream in self._hub
        return any(
            pin.matches_repo(hub, repo) and (pin.tag is None or fnmatch.fnmatchcase(tag, pin.tag))
            for pin in self._pins
        )

    def repository(self, upstream: str, repo: str) -> bool:
        """A whole repository is pinned (its by-digest pulls too, not only its tags)."""
        hub = upstream in self._hub
        return any(pin.tag is None and pin.matches_repo(hub, repo) for pin in self._pins)
