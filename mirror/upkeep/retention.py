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
    ) -> None:
        self._sweeper = sweeper
        self._keeper = keeper
        self._index = index
        self._pins = pins
        self._max_age = max_unused_age
        self._clock = clock
        self._metrics = metrics
        self._interval = min(max_unused_age / 100, MAX_INTERVAL)
        self._last_run = -math.inf

    @property
    def enabled(self) -> bool:
        return self._max_age > 0

    async def run(self) -> Swept:
        now = self._clock()
        # Each sweep reads every tag and manifest link: often enough for the age's precision,
        # not at every flush (a clock set back runs it at once).
        if not self.enabled or 0 <= now - self._last_run < self._interval:
            return Swept()
        self._last_run = now
        swept = await self._sweeper.unused(now - self._max_age, self._pins)
        # Same step as the transaction: files go once their readers let go (BlobKeeper.forget).
        self._keeper.forget(swept.blobs)
        self._index.forget(swept.tag_keys, swept.link_keys, swept.manifests)
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
