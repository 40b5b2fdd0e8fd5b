"""Background upkeep: reconcile at start, flush last-access and pull times, age out what nobody
pulled (retention), evict to stay under max_size."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mirror.config import StorageConfig
from mirror.reference import Digest
from mirror.stores.blob_files import BlobFiles
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.disk_space import DiskSpace
from mirror.stores.leases import BlobLeases
from mirror.stores.ledger import UsageLedger
from mirror.stores.metadata import Metadata
from mirror.upkeep.bucket_eviction import BucketEviction
from mirror.upkeep.retention import Retention

log = logging.getLogger(__name__)

UPLOAD_SWEEP_INTERVAL = 600.0  # seconds between looks for abandoned multipart uploads
BUSY_RETRY = 1.0  # seconds between eviction attempts while everything is in use


@dataclass(slots=True)
class ReconcileReport:
    temp_files: int = 0
    rows_without_file: int = 0
    files_without_row: int = 0


@dataclass(slots=True)
class VerifyReport:
    checked: int = 0
    corrupt: list[str] = field(default_factory=list)
    skipped_busy: int = 0


class Janitor:
    """Owns the upkeep task: started with the app, cancelled and awaited when it stops."""

    def __init__(
        self,
        metadata: Metadata,
        files: BlobFiles,
        keeper: BlobKeeper,
        ledger: UsageLedger,
        leases: BlobLeases,
        disk: DiskSpace,
        config: StorageConfig,
        retention: Retention | None = None,
        bucket_eviction: BucketEviction | None = None,
    ) -> None:
        self._metadata = metadata
        self._files = files
        self._keeper = keeper
        self._ledger = ledger
        self._leases = leases
        self._disk = disk
        self._config = config
        self._retention = retention
        self._bucket_eviction = bucket_eviction  # max_size on a shared bucket
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one eviction or verify at a time
        self._next_upload_sweep = -math.inf  # the first pass looks for abandoned uploads

    async def start(self) -> None:
        self._disk.restore_reserve()
        await self.reconcile()
        if self._keeper.backend.local:
            # A shared bucket's eviction asks the bucket: at the first pass, not before serving.
            await self.evict()
        self._task = asyncio.create_task(self._run(), name="janitor")

    async def abort_abandoned(self) -> int:
        """A bucket's multipart uploads that a replica killed mid-fill left behind."""
        try:
            # Wall time, not an injected clock: the bucket stamps uploads with its own.
            return await self._keeper.backend.abort_abandoned(time.time())
        except Exception as exc:  # the store is away: /readyz says so; try at the next pass
            log.warning("could not look for abandoned uploads: %s", exc)
            return 0

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ledger.over_limit.wait(), self._config.flush_interval)
            try:
                await self.flush()
                loop_time = asyncio.get_running_loop().time()
                if loop_time >= self._next_upload_sweep:
                    self._next_upload_sweep = loop_time + UPLOAD_SWEEP_INTERVAL
                    await self.abort_abandoned()
                await self.retain()
                evicted, _ = await self.evict()
                if not evicted and self._keeper.held_by_pins:
                    # Only pinned content keeps usage over the bound: no release can help.
                    await asyncio.sleep(self._config.flush_interval)
                elif not evicted and self._ledger.over_limit.is_set():
                    # Over the bound, but every blob is being read or fetched: wait until one
                    # is let go (or a little), rather than spin.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._leases.next_release(), BUSY_RETRY)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("janitor pass failed; trying again later")
                await asyncio.sleep(self._config.flush_interval)

    async def flush(self) -> None:
        await self._keeper.flush_access_times()
        await self._metadata.flush_pulls()
        # Once a purge or an eviction freed room, the reserve for the next full disk returns.
        self._disk.restore_reserve()

    async def retain(self) -> None:
        """Age out what was not pulled within max_unused_age (after a flush: the pull times
        retention reads are the ones written). A pass begins here: the usage exchange of the
        last one is forgotten, so eviction reuses only this pass's."""
        if self._retention is not None:
            self._retention.new_pass()
            await self._retention.run()

    async def reconcile(self) -> ReconcileReport:
        """Make rows and files agree after a crash: no row without a file, no file without a row."""
        report = ReconcileReport(temp_files=self._files.sweep_temps())
        rows = {row.digest: row.size for row in await self._metadata.blob_rows()}
        if not self._keeper.backend.local:
            # The rows index a bucket: an object another replica removed is found missing when
            # asked for (a miss), not by listing the whole bucket at every start.
            self._ledger.reset(sum(rows.values()), len(rows))
            return report
        on_disk: set[Digest] = set()
        for path, digest in self._files.stored_files():
            if digest is None or digest not in rows:
                path.unlink(missing_ok=True)
                report.files_without_row += 1
            else:
                on_disk.add(digest)
        missing = [digest for digest in rows if digest not in on_disk]
        if missing:
            await self._metadata.delete_blobs(missing)
        report.rows_without_file = len(missing)
        kept = [size for digest, size in rows.items() if digest in on_disk]
        self._ledger.reset(sum(kept), len(kept))
        if report.temp_files or report.rows_without_file or report.files_without_row:
            log.warning("reconciled the store after an unclean stop: %s", report)
        return report

    async def evict(self) -> tuple[int, int]:
        """Evict least recently used blobs until usage is under the low-water mark (on a
        shared bucket: the bucket's, upkeep/bucket_eviction.py)."""
        if self._bucket_eviction is not None:
            evicted = await self._bucket_eviction.run()
            return evicted.blobs, evicted.bytes
        if not self._keeper.backend.local:
            return 0, 0  # no bound set: the local totals of a bucket's index bound nothing
        if not self._config.max_size or self._ledger.bytes <= self._config.max_size:
            return 0, 0
        removed = await self._keeper.evict(self._ledger.eviction_target)
        return len(removed), sum(row.size for row in removed)

    async def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Re-hash every stored blob, those being read included; remove the ones whose bytes
        changed on disk (their readers finish; new requests fetch them again)."""
        report = VerifyReport()
        async with self._lock:
            rows = await self._metadata.blob_rows()
            for index, row in enumerate(rows, start=1):
                matches = await self._keeper.backend.matches_digest(row.digest)
                if matches is None:
                    report.skipped_busy += 1  # no file: a fill is storing it right now
                    continue
                report.checked += 1
                if not matches:
                    report.corrupt.append(str(row.digest))
                    await self._keeper.remove([row.digest])
                    log.error("blob %s failed verification and was removed", row.digest)
                if progress is not None:
                    progress(index, len(rows))
        return report
