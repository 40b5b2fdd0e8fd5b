"""Background upkeep: reconcile at start, flush last-access times, evict to stay under max_size."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from mirror.config import StorageConfig
from mirror.metrics import Metrics
from mirror.reference import Digest
from mirror.stores.blob_files import BlobStore
from mirror.stores.ledger import BlobUsage
from mirror.stores.metadata import Metadata
from mirror.stores.removal import BlobRemover

log = logging.getLogger(__name__)

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
        store: BlobStore,
        usage: BlobUsage,
        config: StorageConfig,
        metrics: Metrics,
        clock: Callable[[], float],
        remover: BlobRemover,
    ) -> None:
        self._remover = remover
        self._metadata = metadata
        self._store = store
        self._usage = usage
        self._config = config
        self._metrics = metrics
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one eviction or verify at a time

    async def start(self) -> None:
        await self.reconcile()
        await self.evict()
        self._task = asyncio.create_task(self._run(), name="janitor")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._usage.over_limit.wait(), self._config.flush_interval)
            try:
                await self.flush()
                evicted, _ = await self.evict()
                if not evicted and self._usage.over_limit.is_set():
                    # Over the bound, but every blob is being read or fetched: wait a little
                    # rather than spin.
                    await asyncio.sleep(BUSY_RETRY)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("janitor pass failed; trying again later")
                await asyncio.sleep(self._config.flush_interval)

    async def flush(self) -> None:
        """Write the batched last-access times: one transaction, not one per request."""
        accessed = self._usage.take_accessed()
        if accessed:
            await self._metadata.touch_blobs(accessed.items())

    async def reconcile(self) -> ReconcileReport:
        """Make rows and files agree after a crash: no row without a file, no file without a row."""
        report = ReconcileReport(temp_files=self._store.sweep_temps())
        rows = dict(await self._metadata.blob_rows())
        on_disk: set[str] = set()
        for path, digest in self._store.stored_files():
            if digest is None or str(digest) not in rows:
                path.unlink(missing_ok=True)
                report.files_without_row += 1
            else:
                on_disk.add(str(digest))
        missing = [digest for digest in rows if digest not in on_disk]
        if missing:
            await self._metadata.delete_blobs(missing)
        report.rows_without_file = len(missing)
        kept = [size for digest, size in rows.items() if digest in on_disk]
        self._usage.reset(sum(kept), len(kept))
        if report.temp_files or report.rows_without_file or report.files_without_row:
            log.warning("reconciled the store after an unclean stop: %s", report)
        return report

    async def evict(self) -> tuple[int, int]:
        """Delete least recently used blobs until usage is under the low-water mark."""
        limit = self._config.max_size
        if not limit or self._usage.bytes <= limit:
            return 0, 0
        async with self._lock:
            await self.flush()
            target = limit * self._config.low_water
            evicted: list[tuple[str, int]] = []
            for digest, size in await self._metadata.blobs_by_last_access():
                if self._usage.bytes - sum(s for _, s in evicted) <= target:
                    break
                if not self._usage.busy(digest):
                    evicted.append((digest, size))
            removed = await self._remover.remove(digest for digest, _ in evicted)
        freed = sum(size for _, size in removed)
        self._metrics.evicted_blobs.inc(len(removed))
        self._metrics.evicted_bytes.inc(freed)
        log.info("evicted %d blobs (%d bytes) to stay under %d bytes", len(removed), freed, limit)
        return len(removed), freed

    async def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyReport:
        """Re-hash every stored blob; remove the ones whose bytes changed on disk."""
        report = VerifyReport()
        loop = asyncio.get_running_loop()
        async with self._lock:
            rows = await self._metadata.blob_rows()
            for index, (text, _) in enumerate(rows, start=1):
                digest = Digest.parse(text)
                if self._usage.busy(text):
                    report.skipped_busy += 1
                    continue
                report.checked += 1
                if not await loop.run_in_executor(None, self._store.matches_digest, digest):
                    report.corrupt.append(text)
                    await self._remover.remove([text])
                    log.error("blob %s failed verification and was removed", text)
                if progress is not None:
                    progress(index, len(rows))
        return report
