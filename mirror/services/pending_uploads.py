"""Blobs verified on this replica's disk whose upload to the bucket is still running.

A fill's parts go up while the download runs (services/fill_upload.py: bytes reach the bucket
as they arrive, invisible until completed). Its last byte waits for size and digest to be
verified and for the blob to be on this replica's disk (the fill's fsynced temp file), not for
the bucket: the rest of the upload (the last parts, then CompleteMultipartUpload, or one PUT)
runs behind the clients. Waiting for it made a cold fetch 0.2-0.3x as fast as with the
filesystem backend on the bench machine, where SeaweedFS writes about 100 MiB/s. Until the
object is complete,
this replica serves the digest from the verified file (hits and Range, with sendfile); once
complete, the file goes as soon as its last reader lets go, and hits come from the bucket. If
the upload fails, the row goes (the next request is a miss and fetches again) and the multipart
upload is aborted: an object appears in the bucket only whole and only from verified bytes.

A stop waits up to DRAIN seconds for the uploads in flight, then aborts the rest (and removes
their rows). An unclean stop leaves at worst an unfinished multipart upload (the janitor's
sweep of abandoned uploads) and a row whose object is missing, which a hit finds out (BlobGone:
a miss).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirror.reference import Digest
from mirror.services.fill_upload import FillUpload
from mirror.stores.blob_files import BlobFiles
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.metadata import Metadata

log = logging.getLogger(__name__)

DRAIN = 30.0  # seconds a stop waits for uploads in flight before aborting them


@dataclass(slots=True)
class _Pending:
    path: Path  # the verified file
    size: int
    readers: int = 0  # clients being sent the file (BlobService.reading)
    over: bool = False  # the upload completed or failed: the file goes with its last reader


class PendingUploads:
    def __init__(self, files: BlobFiles, keeper: BlobKeeper, metadata: Metadata) -> None:
        self._files = files
        self._keeper = keeper
        self._metadata = metadata
        self._pending: dict[Digest, _Pending] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def __contains__(self, digest: Digest) -> bool:
        return digest in self._pending

    def path(self, digest: Digest) -> Path | None:
        """The verified local file of a blob whose upload still runs. Valid until
        the caller's next await; `reading` keeps it for as long as a client is sent it."""
        pending = self._pending.get(digest)
        return None if pending is None else pending.path

    def hand_over(self, digest: Digest, path: Path, size: int, upload: FillUpload) -> None:
        """The blob at `path` is verified and its row written: serve it from here, and complete
        `upload` behind the clients."""
        pending = _Pending(path, size)
        self._pending[digest] = pending
        task = asyncio.create_task(self._complete(digest, pending, upload), name=f"up {digest}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextmanager
    def reading(self, digest: Digest) -> Iterator[None]:
        """A client is sent the blob: if it is the local file, that file stays until it is done
        (entered in the step the file was handed out, so it cannot go in between)."""
        pending = self._pending.get(digest)
        if pending is not None:
            pending.readers += 1
        try:
            yield
        finally:
            if pending is not None:
                pending.readers -= 1
                if pending.over and pending.readers == 0:
                    self._files.discard(pending.path)

    async def settled(self) -> None:
        """Wait until every upload handed over so far is complete or aborted."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Wait up to DRAIN seconds for the uploads in flight; abort the rest."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=DRAIN)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _complete(self, digest: Digest, pending: _Pending, upload: FillUpload) -> None:
        try:
            await upload.finish(pending.size)
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            if not cancelled:
                log.warning("upload of %s failed: %s; fetching it again when asked", digest, exc)
            # The row first: from the next request on this is a miss. Then the parts go.
            try:
                await self._keeper.remove([digest])
            except Exception as error:  # the index failed: a hit finds the object missing
                log.warning("could not remove the row of %s: %s", digest, error)
            finally:
                self._over(digest, pending)
                await upload.abort()
            if cancelled:
                raise
            return
        # A purge or an eviction meanwhile removed the row, and its delete found no object
        # yet: the object just completed must not outlive the row (nor come back for others).
        try:
            if await self._metadata.blob_row(digest) is None:
                await self._keeper.backend.remove(digest)
        finally:
            self._over(digest, pending)

    def _over(self, digest: Digest, pending: _Pending) -> None:
        """New requests no longer get the file; it goes now, or with its last reader."""
        pending.over = True
        if self._pending.get(digest) is pending:
            del self._pending[digest]
        if pending.readers == 0:
            self._files.discard(pending.path)
