"""Retention: content no client pulled within storage.max_unused_age leaves, pins excepted."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from mirror.metrics import Metrics
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.pins import Pins
from mirror.stores.shared_index import SharedIndex
from mirror.stores.sweep import Sweeper, Swept
from mirror.upkeep.bucket_retention import BucketRetention

log = logging.getLogger(__name__)

MAX_INTERVAL = 600.0  # seconds between two sweeps at most (at least 1% of max_unused_age)


class Retention:
    """A sweep at janitor passes (after the pull times were flushed): tags and by-digest pulls
    older than the age go, then whatever only they held, by the purge's reference rules
    (stores/sweep.py), and blobs no manifest references that nobody read for as long."""

    def __init__(
        self,
        sweeper: Sweeper,
        keeper: BlobKeeper,
        index: SharedIndex,
        pins: Pins,
        max_unused_age: float,
        clock: Callable[[], float],
        metrics: Metrics,
        shared: BucketRetention | None = None,
    ) -> None:
        self._sweeper = sweeper
        self._keeper = keeper
        self._index = index
        self._pins = pins
        self._max_age = max_unused_age
        self._clock = clock
        self._metrics = metrics
        self._interval = min(max_unused_age / 100, MAX_INTERVAL)
        self._shared = shared
        if shared is not None:
            # Reports must reach the other replicas well within the grace period.
            self._interval = min(self._interval, shared.grace / 3)
        self._last_run = -math.inf

    @property
    def enabled(self) -> bool:
        return self._max_age > 0

    def new_pass(self) -> None:
        if self._shared is not None:
            self._shared.latest = None

    async def run(self) -> Swept:
        now = self._clock()
        # Each sweep reads every tag and manifest link: often enough for the age's precision,
        # not at every flush (a clock set back runs it at once).
        if not self.enabled or 0 <= now - self._last_run < self._interval:
            return Swept()
        self._last_run = now
        cutoff = now - self._max_age
        shared, elsewhere = self._shared, None
        if shared is not None:
            exchanged = await shared.exchange(now, cutoff)
            if exchanged is None:
                log.warning("retention waits: the other replicas' usage could not be read")
                return Swept()
            elsewhere = exchanged.others.usage
        doom_at = None if shared is None else now
        swept = await self._sweeper.unused(cutoff, self._pins, elsewhere, doom_at)
        # Same step as the transaction: files go once their readers let go (BlobKeeper.forget);
        # a shared bucket's objects after the grace period (delete_due).
        self._keeper.forget(swept.blobs, delete=shared is None)
        self._index.forget(swept.tag_keys, swept.link_keys, swept.manifests)
        if shared is not None and elsewhere is not None:
            await shared.delete_due(now, elsewhere, cutoff)
        self._metrics.removed(
            "age",
            tags=swept.tags,
            manifests=len(swept.manifests),
            blobs=len(swept.blobs),
            size=swept.bytes,
        )
        if swept.tags or swept.manifests or swept.blobs:
            log.info(
                "retention removed %d tags, %d manifests, %d blobs (%d bytes) unused for %gs",
                swept.tags,
                len(swept.manifests),
                len(swept.blobs),
                swept.bytes,
                self._max_age,
            )
        return swept
