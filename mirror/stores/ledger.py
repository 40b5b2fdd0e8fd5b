"""In-memory view of the blob store: totals, blobs in use, and batched last-access times."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable


class BlobUsage:
    """Shared by the blob service (which reports), the janitor and purges (which act).

    Keeping last-access times here, flushed in batches, is what keeps SQLite off the hot path
    of a cache hit.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.bytes = 0
        self.blobs = 0
        self._in_use: Counter[str] = Counter()
        self._after_release: dict[str, Callable[[], None]] = {}
        self._accessed: dict[str, float] = {}
        self.over_limit = asyncio.Event()

    def reset(self, total_bytes: int, blobs: int) -> None:
        self.bytes, self.blobs = total_bytes, blobs
        self._check()

    def added(self, size: int) -> None:
        self.bytes += size
        self.blobs += 1
        self._check()

    def removed(self, size: int) -> None:
        self.bytes = max(0, self.bytes - size)
        self.blobs = max(0, self.blobs - 1)
        self._check()

    def _check(self) -> None:
        if self.max_size and self.bytes > self.max_size:
            self.over_limit.set()
        else:
            self.over_limit.clear()

    def touch(self, digest: str, when: float) -> None:
        self._accessed[digest] = when

    def take_accessed(self) -> dict[str, float]:
        accessed, self._accessed = self._accessed, {}
        return accessed

    def acquire(self, digest: str) -> None:
        self._in_use[digest] += 1

    def release(self, digest: str) -> None:
        self._in_use[digest] -= 1
        if self._in_use[digest] <= 0:
            del self._in_use[digest]
            action = self._after_release.pop(digest, None)
            if action is not None:
                action()

    def when_released(self, digest: str, action: Callable[[], None]) -> None:
        """Run `action` now, or once the last reader or fill of this blob lets go of it."""
        if self.busy(digest):
            self._after_release[digest] = action
        else:
            action()

    def cancel_pending(self, digest: str) -> None:
        """A fill stored this blob again: an earlier deferred delete must not remove it."""
        self._after_release.pop(digest, None)

    def busy(self, digest: str) -> bool:
        """A fill or a reader holds this blob: eviction and verify leave it alone."""
        return self._in_use[digest] > 0
