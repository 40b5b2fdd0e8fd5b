"""Eviction on a bucket that several replicas share: `storage.max_size` bounds the blobs in the
bucket (under the prefix), whichever replicas stored them.

No replica's index sees the whole bucket, and no replica sees the others' clients, so one
replica acts, on the whole picture: the replica with the lowest id among those whose own report
(written within the grace) says they evict; a replica whose last turn failed says it does not,
until it evicts again. At most every `delete_grace` / 3 it lists the bucket's blobs
(stores/s3_inventory.py) and, when their total less what is already doomed is over the bound,
chooses the least recently used down to the low-water mark: by the last use any replica
reported or, when nobody did, by the object's creation (the bucket's LastModified, brought to
this replica's clock by the Date of the bucket's answer to its report). Pinned content
anywhere, what replicas alive doomed already, and objects a reader here holds are passed by.
What it chooses is doomed, leaves this replica's index at once, and is deleted after the grace
unless a replica reports a later use (any use, for one no report named) or pins it
(bucket_retention). So the bound is soft: the bucket may be over it between passes and for a
grace after one, and a fill is never held up by it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mirror.metrics import Metrics
from mirror.reference import Digest
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.doomed import DoomedObjects
from mirror.stores.leases import BlobLeases
from mirror.stores.s3_inventory import StoredObject
from mirror.stores.s3_parts import ERRORS
from mirror.stores.usage import Usage
from mirror.upkeep.bucket_retention import BucketRetention, Exchanged

log = logging.getLogger(__name__)

# What the reports cover when max_unused_age is unset: a blob nobody used for this long is
# ordered by its creation alone.
EVICTION_WINDOW = 7 * 86400.0
MAX_INTERVAL = 600.0  # seconds between two looks at the bucket at most

Inventory = Callable[[], Awaitable[list[StoredObject]]]


@dataclass(frozen=True, slots=True)
class Evicted:
    blobs: int = 0
    bytes: int = 0


class BucketEviction:
    def __init__(
        self,
        shared: BucketRetention,
        inventory: Inventory,
        doomed: DoomedObjects,
        keeper: BlobKeeper,
        leases: BlobLeases,
        *,
        max_size: int,
        low_water: float,
        window: float,
        clock: Callable[[], float],
        metrics: Metrics,
    ) -> None:
        self._shared = shared
        self._inventory = inventory
        self._doomed = doomed
        self._keeper = keeper
        self._leases = leases
        self._max_size = max_size
        self._target = int(max_size * low_water)
        self._window = window
        self._clock = clock
        self._metrics = metrics
        # Reports must reach the acting replica well within the grace, as for retention.
        self._interval = min(shared.grace / 3, MAX_INTERVAL)
        self._last_run = -math.inf

    async def run(self) -> Evicted:
        """At most every interval (a clock set back runs it at once): exchange reports (or
        reuse retention's of this pass), evict if this replica is the one that acts, and
        delete what is due."""
        now = self._clock()
        if 0 <= now - self._last_run < self._interval:
            return Evicted()
        self._last_run = now
        cutoff = now - self._window
        exchanged = self._shared.latest or await self._shared.exchange(now, cutoff)
        if exchanged is None:
            log.warning("eviction waits: the other replicas' usage could not be read")
            self._shared.able_to_evict(False)
            return Evicted()
        done: Evicted | None = Evicted()
        if self.acts(exchanged):
            try:
                done = await self._evict(now, exchanged)
            except Exception:
                self._shared.able_to_evict(False)  # the janitor logs it and tries again
                raise
        else:
            self._metrics.bucket.blob_bytes.set(0)  # another replica's listing counts now
        # The others wait for this replica only while it can look at the bucket.
        self._shared.able_to_evict(done is not None)
        await self._shared.delete_due(now, exchanged.others.usage, cutoff)
        return done or Evicted()

    def acts(self, exchanged: Exchanged) -> bool:
        """This replica is the one that evicts: the lowest id of those alive that do (and
        could at their last attempt)."""
        me = self._shared.replica
        return min(exchanged.others.evictors | {me}) == me

    async def _evict(self, now: float, exchanged: Exchanged) -> Evicted | None:
        """What it doomed; None when it could not look at the bucket."""
        offset = exchanged.offset
        if offset is None:
            log.warning("eviction waits: this replica's usage report did not reach the bucket")
            return None
        try:
            objects = await self._inventory()
        except ERRORS as exc:
            log.warning("eviction waits: could not list the bucket's blobs: %s", exc)
            return None
        # Doomed here or by another replica (one that evicted before this one took over).
        doomed = await self._doomed.digests() | exchanged.others.usage.doomed
        live = [item for item in objects if str(item.digest) not in doomed]
        total = sum(item.size for item in live)
        self._metrics.bucket.blob_bytes.set(total)
        if total <= self._max_size:
            return Evicted()
        uses = Usage()
        uses.merge(exchanged.mine)
        uses.merge(exchanged.others.usage)

        def last_use(item: StoredObject) -> float:
            reported = uses.last_use(str(item.digest))
            # Unreported (nobody used it within the window, or a fill whose replica has not
            # reported yet): its creation stands for its last use.
            return reported if reported > -math.inf else item.modified - offset

        chosen: list[tuple[Digest, float]] = []
        freed = 0
        for item in sorted(live, key=last_use):
            if total - freed <= self._target:
                break
            if str(item.digest) in uses.pinned or self._leases.busy(item.digest):
                continue
            # The last use known: a use reported later keeps it. A blob no report names has
            # none (-inf): its creation, on the bucket's clock, orders it, but a replica that
            # served it before the doom reports that use on its own clock, maybe earlier.
            chosen.append((item.digest, uses.last_use(str(item.digest))))
            freed += item.size
        # Rows and doom in one transaction, in the step the totals change (as a sweep's).
        self._keeper.forget(await self._doomed.evict(chosen, now), delete=False)
        if chosen:
            # Told at once, so that a replica taking over does not count these again.
            await self._shared.publish_doomed(exchanged, now)
        self._metrics.bucket.blob_bytes.set(total - freed)
        self._metrics.bucket.doomed.set(await self._doomed.count())
        self._metrics.evicted_blobs.inc(len(chosen))
        self._metrics.evicted_bytes.inc(freed)
        self._metrics.removed("size", blobs=len(chosen), size=freed)
        if total - freed > self._max_size:
            log.warning(
                "the bucket holds %d bytes of blobs, over storage.max_size (%d), and the rest"
                " is pinned or being read here",
                total - freed,
                self._max_size,
            )
        if chosen:
            log.info(
                "evicted %d blobs (%d bytes) from the bucket to stay under max_size; deleted"
                " after the grace period unless a replica uses them meanwhile",
                len(chosen),
                freed,
            )
        return Evicted(len(chosen), freed)
