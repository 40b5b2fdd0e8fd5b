"""Removing from a bucket that several replicas share: the usage exchange and the grace.

Each replica sees only its own clients, so before a sweep (retention) or an eviction it
publishes what it used within a window (`max_unused_age`: tags pulled, and every digest they
reach) and reads what the others published (stores/usage.py, stores/s3_usage.py): the sweep
keeps what any replica used, eviction orders by the last use anywhere. The rows and records
either removes go at once; each object is only doomed (the `doomed` table, written in the
removal's own transaction) and deleted once `storage.s3.delete_grace` has passed, unless a
report written meanwhile shows a replica reading it, or this replica indexed it again, or a
reader here holds it, or it is pinned or locked on a replica by then. So a replica that began
serving an object shortly before or after the removal, and had not reported it yet, is not
cut off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from mirror.bucket_metrics import BucketMetrics
from mirror.reference import Digest
from mirror.stores.blob_keeper import BlobKeeper, PinnedContent
from mirror.stores.doomed import DoomedObjects
from mirror.stores.leases import BlobLeases
from mirror.stores.metadata import Metadata
from mirror.stores.usage import Reports, Usage, UsageBoard, recent_usage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Exchanged:
    """One exchange of reports: this replica's usage as published, and the others'."""

    at: float
    mine: Usage
    others: Reports
    # The bucket's clock minus this replica's (the Date of the answer to its report's PUT);
    # None when that PUT failed.
    offset: float | None


class BucketRetention:
    def __init__(
        self,
        metadata: Metadata,
        board: UsageBoard,
        doomed: DoomedObjects,
        keeper: BlobKeeper,
        leases: BlobLeases,
        grace: float,
        metrics: BucketMetrics,
        pinned: PinnedContent | None = None,
    ) -> None:
        self._metadata = metadata
        self._board = board
        self._doomed = doomed
        self._keeper = keeper
        self._leases = leases
        self.grace = grace
        self._metrics = metrics
        self._pinned = pinned
        # The exchange of the janitor's pass so far (retention's), which eviction reuses in
        # the same pass; the janitor forgets it at the start of each pass.
        self.latest: Exchanged | None = None

    @property
    def replica(self) -> str:
        return self._board.replica

    async def exchange(self, now: float, cutoff: float) -> Exchanged | None:
        """Read the other replicas' usage, then publish this replica's since `cutoff`; None
        when the others' could not be read whole (removal then waits: never on part of the
        picture). Read first: a report of this replica's id that this process did not write
        (a copied data folder) is found before it would be overwritten."""
        # A report older than the cutoff and the grace can keep nothing any more; one written
        # within the grace names a replica that is alive. One written within two graces lists
        # as doomed what its replica deletes at its passes (every third of a grace), once a
        # grace has passed; an older one names a replica gone, whose doomed objects stay.
        others = await self._board.others(
            now, cutoff - self.grace, now - self.grace, now - 2 * self.grace
        )
        mine = await recent_usage(self._metadata.database.rows, cutoff, now)
        if self._pinned is not None:
            mine.pinned = {str(digest) for digest in await self._pinned()}
        mine.doomed = await self._doomed.digests()
        # A failure is logged; the others read this replica's last report meanwhile.
        offset = await self._board.publish(mine, now)
        self.latest = None if others is None else Exchanged(now, mine, others, offset)
        return self.latest

    def able_to_evict(self, able: bool) -> None:
        """Whether this replica's next reports say it evicts: not after an attempt that could
        not look at the bucket, so that the next lowest id acts meanwhile (this one tries
        again at each pass while it has the lowest id)."""
        self._board.evicts = able

    async def publish_doomed(self, exchanged: Exchanged, now: float) -> None:
        """This replica's report again, with what it has just doomed."""
        exchanged.mine.doomed = await self._doomed.digests()
        await self._board.publish(exchanged.mine, now)

    async def delete_due(self, now: float, elsewhere: Usage, cutoff: float) -> int:
        """Delete the objects doomed at least `grace` ago that nobody uses; how many. An
        object eviction chose is kept when a replica used it after its last use known then;
        one retention chose, when a replica used it within the age (since `cutoff`). What is
        pinned or locked now on any replica is kept: a bundle import locks its tags only
        after storing their blobs, and a pass in between may have doomed one."""
        settled: list[str] = []
        deleted = 0
        due = await self._doomed.due(now - self.grace)
        pinned = set(elsewhere.pinned)
        if due and self._pinned is not None:
            pinned |= {str(digest) for digest in await self._pinned()}
        for doomed in due:
            digest = doomed.digest
            parsed = Digest.parse(digest)
            if self._leases.busy(parsed):
                continue  # a reader here: the next pass looks again
            if digest in pinned:
                log.info("kept %s in the bucket: pinned or locked on a replica", digest)
            elif (
                elsewhere.digest_used(digest, cutoff)
                if doomed.used_at is None
                else elsewhere.last_use(digest) > doomed.used_at
            ):
                log.info("kept %s in the bucket: another replica read it", digest)
            elif await self._metadata.blob_row(parsed) is None:
                if not await self._keeper.backend.remove(parsed):
                    continue  # the bucket refused: still doomed, the next pass tries again
                deleted += 1
            settled.append(digest)  # deleted, used elsewhere, or indexed here again
        await self._doomed.drop(settled)
        self._metrics.doomed.set(await self._doomed.count())
        if deleted:
            log.info("deleted %d objects from the bucket after the grace period", deleted)
        return deleted
