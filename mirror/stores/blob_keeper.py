"""The one way blobs enter and leave the store: rows, files and totals change together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path

from mirror.metrics import Metrics
from mirror.reference import Digest
from mirror.stores.blob_backend import BlobBackend, FilesystemBackend
from mirror.stores.blob_files import BlobFiles
from mirror.stores.leases import BlobLeases
from mirror.stores.ledger import Reservation, UsageLedger
from mirror.stores.metadata import Metadata
from mirror.stores.records import BlobRow

log = logging.getLogger(__name__)

# The blobs pinned and locked tags reach (Sweeper.pinned: storage.pinned and tags imported
# from bundles), asked at each eviction.
PinnedContent = Callable[[], Awaitable[set[Digest]]]
EVICT_BATCH = 500  # blobs whose rows and files go in one event-loop step


class BlobKeeper:
    """Used by fills (admit), and by eviction, purges and verify (remove).

    A blob is stored row first, then file: a file is never visible without its row, and a
    crash in between leaves a row without a file, which the next start removes. It leaves row
    first, then file once no reader holds it; a crash in between leaves a file without a row,
    which the next start removes too.

    With a bucket (a backend that is not `local`) a verified file given to `admit` (a bundle
    import) is uploaded, then its row written; an object without a row is harmless (other
    replicas index it when asked for it). A fill's row is written once its bytes are verified
    on this replica's disk, while its upload completes behind the clients (services/
    pending_uploads.py serves the local file until then, and removes the row if the upload
    fails): a row whose object never arrived (a replica killed meanwhile) is a miss when asked.
    """

    def __init__(
        self,
        metadata: Metadata,
        files: BlobFiles,
        ledger: UsageLedger,
        leases: BlobLeases,
        metrics: Metrics,
        *,
        pinned: PinnedContent | None = None,
        backend: BlobBackend | None = None,
    ) -> None:
        self._metadata = metadata
        self.backend: BlobBackend = backend or FilesystemBackend(files)
        self._pinned = pinned  # what pinned and locked tags reach: eviction passes it by
        self._files = files
        self._ledger = ledger
        self._leases = leases
        self._metrics = metrics
        self.held_by_pins = False  # the last eviction stopped short because of pins only
        self._evicting = asyncio.Lock()  # one eviction at a time: two would pick the same rows

    async def reserve(self, size: int) -> Reservation | None:
        """A fill has begun with an announced size: count it against the bound now, and make
        room now, so the disk (stored files and running fills' temp files) stays under the
        bound while clients pull, not only once the blob lands. None for a blob larger than
        the whole bound, which is never stored."""
        if self._ledger.too_large(size):
            return None
        # Reserved before any await, so concurrent fills each see the others' shares.
        reservation = self._ledger.reserve(size)
        try:
            if self._ledger.needs_room(0):
                await self._make_room()
        except BaseException:  # cancelled, or the index failed: the fill will not land
            reservation.release()
            raise
        return reservation

    async def admit(
        self,
        temp: Path,
        digest: Digest,
        size: int,
        now: float,
        reservation: Reservation | None = None,
        *,
        uploaded: bool = False,
    ) -> bool:
        """Store a verified temp file as the blob; False when it is larger than the whole bound
        (its readers finish from their open descriptors, and the file is dropped). A fill that
        reserved its size made room when it began; one without (no announced size) makes it
        now. The reservation becomes stored bytes when the row is written; the caller still
        releases it when anything fails. `uploaded`: a fill's upload holds the bytes (completed
        behind its clients, services/pending_uploads.py); only the row is left to write, and
        the file stays the caller's."""
        if self._ledger.too_large(size):
            log.warning("blob %s (%d bytes) exceeds max_size; not stored", digest, size)
            self._files.discard(temp)
            return False
        if reservation is None and self._ledger.needs_room(size):
            # Make room before the blob lands, so the bound holds while clients pull rather
            # than after the janitor's next pass; blobs in use are passed by.
            await self._make_room(size)
        if not self.backend.local:
            if uploaded:
                # The fill's upload completes behind its clients, from this file: it stays
                # the caller's (services/pending_uploads.py serves hits from it meanwhile).
                await self.adopt(digest, size, now, reservation)
                return True
            # Uploaded before the row; the temp file goes once both are there (its readers
            # keep their descriptors). A failure leaves the temp file to the caller.
            await self.backend.commit(temp, digest, size)
            await self.adopt(digest, size, now, reservation)
            self._files.discard(temp)
            return True
        # A purge of an earlier copy may still wait for its readers: it must spare this one.
        # Cancelled before the row is written, so a purge that deletes the new row re-arms it.
        self._leases.cancel_pending(digest)
        if await self._metadata.put_blob(digest, size, now):
            self._ledger.landed(size, reservation)
        try:
            self._files.commit(temp, digest)
        except OSError:
            await self.remove([digest])  # no row may outlive a file that never arrived
            raise
        return True

    async def adopt(
        self, digest: Digest, size: int, now: float, reservation: Reservation | None = None
    ) -> None:
        """Index a blob the bucket holds (uploaded by this replica or by another): a row, no
        bytes moved."""
        self._leases.cancel_pending(digest)  # as in admit: an earlier purge spares this copy
        if await self._metadata.put_blob(digest, size, now):
            self._ledger.landed(size, reservation)

    def fits(self, size: int) -> bool:
        """A blob of this size may be stored (it is not larger than the whole bound)."""
        return not self._ledger.too_large(size)

    async def _make_room(self, incoming: int = 0) -> None:
        """Evict down to the low-water mark, less running fills' shares and `incoming`."""
        await self.evict(self._ledger.eviction_target - self._ledger.reserved - incoming)

    async def remove(self, digests: Iterable[Digest]) -> list[BlobRow]:
        """Rows first (only those that still existed count), then each file when it is free."""
        removed = await self._metadata.delete_blobs(digests)
        self.forget(removed)
        return removed

    def forget(self, rows: Iterable[BlobRow], *, delete: bool = True) -> None:
        """Rows a metadata transaction deleted (a sweep): totals now, each file when it is free.
        Called in the step the transaction returned in, so no request finds a file about to go.
        `delete=False`: the objects stay for now (doomed in a shared bucket: deleted after a
        grace period, upkeep/bucket_retention.py)."""
        for row in rows:
            self._ledger.removed(row.size)
            if delete:
                self._leases.when_released(row.digest, partial(self.backend.delete, row.digest))

    async def flush_access_times(self) -> None:
        """Write the batched last-access times: one transaction, not one per hit."""
        accessed = self._ledger.take_accessed()
        if accessed:
            await self._metadata.touch_blobs(accessed.items())

    async def evict(self, target: int) -> list[BlobRow]:
        """Remove least recently used blobs, skipping those in use and those pinned, until the
        totals are at or under `target` bytes (or nothing more can go)."""
        async with self._evicting:
            if self._ledger.bytes <= target:
                return []
            await self.flush_access_times()  # the LRU order must be current
            remaining = self._ledger.bytes
            pinned = await self._pinned() if self._pinned is not None else set()
            chosen: list[Digest] = []
            busy = 0
            for row in await self._metadata.blobs_by_last_access():
                if remaining <= target:
                    break
                if self._leases.busy(row.digest):
                    busy += 1
                elif row.digest not in pinned:
                    chosen.append(row.digest)
                    remaining -= row.size
            # Still over with nothing in use: pinned content alone holds the store there.
            self.held_by_pins = remaining > target and not busy and bool(pinned)
            removed: list[BlobRow] = []
            # In batches: each batch's files are unlinked in the step that deleted its rows
            # (so no request finds a file about to go), and the loop runs between batches.
            for start in range(0, len(chosen), EVICT_BATCH):
                removed += await self.remove(chosen[start : start + EVICT_BATCH])
        freed = sum(row.size for row in removed)
        self._metrics.evicted_blobs.inc(len(removed))
        self._metrics.evicted_bytes.inc(freed)
        self._metrics.removed("size", blobs=len(removed), size=freed)
        if removed:
            log.info("evicted %d blobs (%d bytes) to stay under max_size", len(removed), freed)
        return removed
