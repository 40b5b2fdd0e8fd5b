"""The one way stored blobs leave the store: used by eviction, purges and verify."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from mirror.reference import Digest
from mirror.stores.blob_files import BlobStore
from mirror.stores.ledger import BlobUsage
from mirror.stores.metadata import Metadata


class BlobRemover:
    """Rows first (only those that still exist count), then files.

    A file that a client is about to send, or is sending, is unlinked only after that client
    lets go, so a purge or an eviction never turns a hit into a broken download. A crash in
    between leaves a file without a row, which the next start removes.
    """

    def __init__(self, metadata: Metadata, store: BlobStore, usage: BlobUsage) -> None:
        self._metadata = metadata
        self._store = store
        self._usage = usage

    async def remove(self, digests: Iterable[str]) -> list[tuple[str, int]]:
        removed = await self._metadata.delete_blobs(digests)
        for digest, size in removed:
            self._usage.removed(size)
            self._usage.when_released(digest, partial(self._store.delete, Digest.parse(digest)))
        return removed
