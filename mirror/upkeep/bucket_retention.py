"""Retention on a bucket that several replicas share.

Each replica sees only its own clients, so before a sweep it publishes what it used within
`max_unused_age` (tags pulled, and every digest they reach) and reads what the others published
(stores/usage.py, stores/s3_usage.py): the sweep keeps what any replica used. The rows and
records it removes go at once; each object is only doomed (the `doomed` table, written in the
sweep's own transaction) and deleted once `storage.s3.delete_grace` has passed, unless a report
written meanwhile shows a replica reading it, or this replica indexed it again, or a reader
here holds it. So a replica that began serving an object shortly before or after the sweep,
and had not reported it yet, is not cut off.
"""

from __future__ import annotations

import logging

from mirror.bucket_metrics import BucketMetrics
from mirror.reference import Digest
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.doomed import DoomedObjects
from mirror.stores.leases import BlobLeases
from mirror.stores.metadata import Metadata
from mirror.stores.usage import Usage, UsageBoard, recent_usage

log = logging.getLogger(__name__)


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
    ) -> None:
        self._metadata = metadata
        self._board = board
        self._doomed = doomed
        self._keeper = keeper
        self._leases = leases
        self.grace = grace
        self._metrics = metrics

    async def exchange(self, now: float, cutoff: float) -> Usage | None:
        """Publish this replica's usage since `cutoff`; the others', or None when they could
        not be read whole (the sweep then waits: it never removes on part of the picture)."""
        mine = await recent_usage(self._metadata.database.rows, cutoff)
        await self._board.publish(mine, now)  # a failure is logged; others read the last one
        # A report older than the cutoff and the grace can keep nothing any more.
        return await self._board.others(now, stale_before=cutoff - self.grace)

    async def delete_due(self, now: float, elsewhere: Usage, cutoff: float) -> int:
        """Delete the objects doomed at least `grace` ago that nobody uses; how many."""
        settled: list[str] = []
        deleted = 0
        for digest in await self._doomed.due(now - self.grace):
            parsed = Digest.parse(digest)
            if self._leases.busy(parsed):
                continue  # a reader here: the next pass looks again
            if elsewhere.digest_used(digest, cutoff):
                log.info("kept %s in the bucket: another replica read it", digest)
            elif await self._metadata.blob_row(parsed) is None:
                self._keeper.backend.delete(parsed)
                deleted += 1
            settled.append(digest)  # deleted, used elsewhere, or indexed here again
        await self._doomed.drop(settled)
        self._metrics.doomed.set(await self._doomed.count())
        if deleted:
            log.info("deleted %d objects from the bucket after the grace period", deleted)
        return deleted
