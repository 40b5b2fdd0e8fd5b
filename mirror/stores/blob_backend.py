"""Where verified blobs live: the seam between the index (SQLite rows) and the bytes.

Two implementations: the local folder (blobs/ under the data folder, the default: hits are
files sent with sendfile) and an S3-compatible bucket (s3_blobs.py: hits are streamed from the
bucket or redirected to it). Fills never write to a backend directly: they download to a local
temp file that their readers follow, and `commit` stores it once size and digest are verified.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

from mirror.reference import Digest
from mirror.stores.blob_files import HASH_CHUNK, BlobFiles


class BlobGone(Exception):
    """The index names a blob its backend no longer holds (another replica purged it): the
    request becomes a miss. Raised before any byte of a body went out."""


class Upload(Protocol):
    """An object written while its source file grows; visible only once `finish`ed."""

    async def send_ready(self, written: int) -> None: ...

    async def finish(self, size: int) -> None: ...

    async def abort(self) -> None: ...


class BlobBackend(Protocol):
    @property
    def local(self) -> bool:
        """Blobs are files in this replica's folder: hits are sent with sendfile, and a blob's
        row is written before its file lands (a crash leaves a row the next start removes)."""
        ...

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Wait for deletes in flight; release connections."""
        ...

    async def check(self) -> str | None:
        """Why the store cannot be used now (readiness), or None."""
        ...

    async def abort_abandoned(self, now: float) -> int:
        """Uploads a dead replica left behind, aborted (a bucket); how many."""
        ...

    async def size_of(self, digest: Digest) -> int | None:
        """The stored blob's size, None when it is not stored."""
        ...

    async def commit(self, temp: Path, digest: Digest, size: int) -> None:
        """Store a verified temp file as the blob; visible to readers whole or not at all."""
        ...

    def begin_upload(self, source: Path, digest: Digest) -> Upload | None:
        """For a bucket: an upload that follows a fill's temp file as it grows, so the blob is
        stored soon after its last byte arrives. None: commit() the verified file instead."""
        ...

    def delete(self, digest: Digest) -> None:
        """Remove the blob (now or, for a bucket, in the background; close() waits)."""
        ...

    async def remove(self, digest: Digest) -> bool:
        """Remove the blob now; False (logged) when the store did not take the delete."""
        ...

    async def read(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes [start, end) of the blob; BlobGone when it is not there."""
        ...

    async def presigned_url(self, digest: Digest) -> str | None:
        """A short-lived URL a client can GET the blob from itself; None when the blob is not
        there (a client must not be sent to a missing object)."""
        ...

    async def matches_digest(self, digest: Digest) -> bool | None:
        """Re-hash the stored blob; None when it is not stored."""
        ...


class FilesystemBackend:
    """Today's store, unchanged: blobs/<algorithm>/<ab>/<hex>, temp → rename."""

    local = True

    def __init__(self, files: BlobFiles) -> None:
        self.files = files

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def check(self) -> str | None:
        return None  # /readyz checks the folders itself

    async def abort_abandoned(self, now: float) -> int:
        return 0  # a dead fill's temp file is swept at start (BlobFiles.sweep_temps)

    async def size_of(self, digest: Digest) -> int | None:
        return self.files.size_of(digest)

    async def commit(self, temp: Path, digest: Digest, size: int) -> None:
        self.files.commit(temp, digest)

    def begin_upload(self, source: Path, digest: Digest) -> Upload | None:
        return None  # a rename once verified: nothing to send ahead

    def delete(self, digest: Digest) -> None:
        self.files.delete(digest)

    async def remove(self, digest: Digest) -> bool:
        self.files.delete(digest)
        return True

    async def read(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        """Not the hit path (that is sendfile from `files.path`): for callers that want bytes."""
        try:
            fd = os.open(self.files.path(digest), os.O_RDONLY)
        except FileNotFoundError:
            raise BlobGone(str(digest)) from None
        return _pieces(fd, start, end)

    async def presigned_url(self, digest: Digest) -> str | None:
        raise NotImplementedError("a local folder has no URLs of its own")

    async def matches_digest(self, digest: Digest) -> bool | None:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self.files.matches_digest, digest)


async def _pieces(fd: int, start: int, end: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    try:
        while start < end:
            piece = await loop.run_in_executor(
                None, os.pread, fd, min(HASH_CHUNK, end - start), start
            )
            if not piece:
                return
            start += len(piece)
            yield piece
    finally:
        os.close(fd)
