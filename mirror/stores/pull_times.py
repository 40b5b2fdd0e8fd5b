"""When clients last pulled tags and manifests: kept in memory, written to SQLite in batches."""

from __future__ import annotations

from dataclasses import dataclass, field

from mirror.reference import Digest

TagKey = tuple[str, str, str]  # (upstream, repo, tag)
LinkKey = tuple[str, str, Digest]  # (upstream, repo, manifest digest)


@dataclass(slots=True)
class PullTimes:
    """A pull only updates a dict here (no SQLite on the path of a hit); the janitor's flush
    writes the batch. Retention and the catalog read what was flushed, so a pull is seen
    there one flush interval later at most (the flush runs before retention decides)."""

    tags: dict[TagKey, float] = field(default_factory=dict)
    manifests: dict[LinkKey, float] = field(default_factory=dict)

    def pulled(
        self, upstream: str, repo: str, tag: str | None, digest: Digest, when: float
    ) -> None:
        if tag is not None:
            self.tags[(upstream, repo, tag)] = when
        self.manifests[(upstream, repo, digest)] = when

    def take(self) -> tuple[dict[TagKey, float], dict[LinkKey, float]]:
        taken = self.tags, self.manifests
        self.tags, self.manifests = {}, {}
        return taken
