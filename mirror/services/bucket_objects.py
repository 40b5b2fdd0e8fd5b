"""Blobs a replica serves from a shared bucket: found there when another replica stored them
(indexed here, one lookup however many clients ask), read or redirected to, and forgotten
when another replica removed them (the request becomes a miss)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import partial

from mirror.reference import Digest
from mirror.services.singleflight import SingleFlight
from mirror.stores.blob_backend import BlobBackend, BlobGone
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.leases import BlobLeases
from mirror.stores.metadata import Metadata

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BucketBlob:
    """A verified blob in the bucket: streamed from it (BucketObjects.read) or, with
    `redirect`, fetched from it by the client itself. `location`: a check of the object
    (and its presigned URL) begun while the request read the index (BucketObjects.check_soon)."""

    digest: Digest
    size: int
    redirect: bool
    location: asyncio.Future[str | None] | None = field(default=None, compare=False)


class BucketObjects:
    def __init__(
        self,
        backend: BlobBackend,
        metadata: Metadata,
        keeper: BlobKeeper,
        leases: BlobLeases,
        clock: Callable[[], float],
    ) -> None:
        self._backend = backend
        self._metadata = metadata
        self._keeper = keeper
        self._leases = leases
        self._clock = clock
        # Lookups of objects not indexed here: a storm of clients HEADs the object once.
        self._lookups: SingleFlight[int | None] = SingleFlight()
        self._checks: set[asyncio.Task[str | None]] = set()  # begun by check_soon

    async def close(self) -> None:
        for task in self._checks:
            task.cancel()
        await asyncio.gather(*self._checks, return_exceptions=True)
        await self._lookups.close()

    def check_soon(self, digest: Digest) -> asyncio.Future[str | None]:
        """Begin asking the bucket for the object, and a URL of it, now: a redirect's HEAD
        then overlaps the index's read of the row (0.3-0.5 ms of a 307 on the bench machine).
        Owned here: a request that goes away, or turns out a miss, leaves it to finish."""
        task = asyncio.get_running_loop().create_task(
            self._backend.presigned_url(digest), name=f"check {digest}"
        )
        self._checks.add(task)
        task.add_done_callback(_finished)
        task.add_done_callback(self._checks.discard)
        return task

    async def stored_size(self, digest: Digest, *, filling: bool) -> int | None:
        """This replica's index first; then, unless this replica is fetching the blob itself
        (`filling`), the bucket: another replica may have stored it (no upstream GET then)."""
        row = await self._metadata.blob_row(digest)
        if row is not None:
            return row.size
        if filling:
            return None
        size = await self._lookups.run(digest, partial(self._adopt, digest))
        if size is None or self._leases.pending_removal(digest):
            return None
        return size

    async def _adopt(self, digest: Digest) -> int | None:
        """Another replica's object: indexed here (a row) when the bucket has it."""
        size = await self._backend.size_of(digest)
        if size is None or self._leases.pending_removal(digest):
            return None
        await self._keeper.adopt(digest, size, self._clock())
        return size

    async def read(self, blob: BucketBlob, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of a blob from the bucket. BlobGone (before any byte) when another
        replica removed it: the row goes too, so the caller's next open() is a miss."""
        try:
            return await self._backend.read(blob.digest, start, end)
        except BlobGone:
            await self._gone(blob.digest)
            raise

    async def redirect_url(self, blob: BucketBlob) -> str:
        """A presigned URL of the object, once it is known to be there (a client sent to a
        missing object would get the bucket's 404, not a miss): BlobGone otherwise."""
        if blob.location is not None:
            url = await asyncio.shield(blob.location)
        else:
            url = await self._backend.presigned_url(blob.digest)
        if url is not None:
            return url
        await self._gone(blob.digest)
        raise BlobGone(str(blob.digest))

    async def _gone(self, digest: Digest) -> None:
        log.info("blob %s is no longer in the bucket; fetching it again", digest)
        await self._keeper.remove([digest])


def _finished(task: asyncio.Task[str | None]) -> None:
    """A check nobody awaited (the request went away, or was a miss) fails quietly."""
    with contextlib.suppress(asyncio.CancelledError):
        task.exception()
