"""Which blobs are in use (a fill writing, a client reading), and deletes deferred until not."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from mirror.reference import Digest


class BlobLeases:
    """A blob file held by a fill or a reader is unlinked only when the last one lets go, so a
    purge or an eviction never turns a hit into a broken download."""

    def __init__(self) -> None:
        self._in_use: Counter[Digest] = Counter()
        self._after_release: dict[Digest, Callable[[], None]] = {}
        self._released = asyncio.Event()

    def acquire(self, digest: Digest) -> None:
        self._in_use[digest] += 1

    def release(self, digest: Digest) -> None:
        self._in_use[digest] -= 1
        if self._in_use[digest] <= 0:
            del self._in_use[digest]
            action = self._after_release.pop(digest, None)
            if action is not None:
                action()
            released, self._released = self._released, asyncio.Event()
            released.set()

    async def next_release(self) -> None:
        """Wait until some blob is no longer held by anyone (eviction may then proceed)."""
        await self._released.wait()

    @contextmanager
    def held(self, digest: Digest) -> Iterator[None]:
        self.acquire(digest)
        try:
            yield
        finally:
            self.release(digest)

    def when_released(self, digest: Digest, action: Callable[[], None]) -> None:
        """Run `action` now, or once the last reader or fill of this blob lets go of it."""
        if self.busy(digest):
            self._after_release[digest] = action
        else:
            action()

    def pending_removal(self, digest: Digest) -> bool:
        """Removed, its file kept only for the readers that have it: not for new requests."""
        return digest in self._after_release

    def cancel_pending(self, digest: Digest) -> None:
        """A fill stores this blob again: an earlier deferred delete must not remove it."""
        self._after_release.pop(digest, None)

    def busy(self, digest: Digest) -> bool:
        """A fill or a reader holds this blob: eviction and verify leave it alone."""
        return self._in_use[digest] > 0
