"""The one way blobs enter and leave the store: rows, files and totals change together."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial
from pathlib import Path

from mirror.reference import Digest
from mirror.stores.blob_files import BlobFiles
from mirror.stores.leases import BlobLeases
from mirror.stores.ledger import UsageLedger
from mirror.stores.metadata import Metadata
from mirror.stores.records import BlobRow

log = logging.getLogger(__name__)


class BlobKeeper:
    """Used by fills (admit), and by eviction, purges and verify (remove).

    A blob is stored row first, then file: a file is never visible without its row, and a
    crash in between leaves a row without a file, which the next start removes. It leaves row
    first, then file once no reader holds it; a crash in between leaves a file without a row,
    which the next start removes too.
    """

    def __init__(
        self, metadata: Metadata, files: BlobFiles, ledger: UsageLedger, leases: BlobLeases
    ) -> None:
        self._metadata = metadata
        self._files = files
        self._ledger = ledger
        self._leases = leases

    async def admit(self, temp: Path, digest: Digest, size: int, now: float) -> bool:
        """Store a verified temp file as the blob; False when it is larger than the whole bound
        (its readers finish from their open descriptors, and the file is dropped)."""
        if self._ledger.too_large(size):
            log.warning("blob %s (%d bytes) exceeds max_size; not stored", digest, size)
            self._files.discard(temp)
            return False
        # A purge of an earlier copy may still wait for its readers: it must spare this one.
        # Cancelled before the row is written, so a purge that deletes the new row re-arms it.
        self._leases.cancel_pending(digest)
        if await self._metadata.put_blob(digest, size, now):
            self._ledger.added(size)
        try:
            self._files.commit(temp, digest)
        except OSError:
            await self.remove([digest])  # no row may outlive a file that never arrived
            raise
        return True

    async def remove(self, digests: Iterable[Digest]) -> list[BlobRow]:
        """Rows first (only those that still existed count), then each file when it is free."""
        removed = await self._metadata.delete_blobs(digests)
        for row in removed:
            self._ledger.removed(row.size)
            self._leases.when_released(row.digest, partial(self._files.delete, row.digest))
        return removed
