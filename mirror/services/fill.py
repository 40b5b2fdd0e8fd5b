"""A fill: one upstream download of a blob, teed to a temp file that every reader follows."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from functools import partial
from pathlib import Path

import aiohttp

from mirror.errors import DigestMismatch, FillFailed
from mirror.reference import Digest

READ_CHUNK = 1024 * 1024
# A span a client cannot be sent with sendfile (a chunked body: the upstream announced no
# length) goes through aiohttp's writer this many bytes at a time.
WRITE_CHUNK = 128 * 1024
# The longest span handed out at once: served-bytes counts (the metric, the access log of a
# client cut short) move at least this often.
MAX_SPAN = 1024 * 1024

# Hash-and-write of fill chunks (hashlib and os.write release the GIL). Its own pool: a fill
# must be able to wait for its thread by the thread's own future.
_ABSORBERS = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="fill")

OpenUpstream = Callable[[], AbstractAsyncContextManager[aiohttp.ClientResponse]]
OnSize = Callable[[int], Awaitable[None]]


class Fill:
    """Progress of one download. Only the fill task mutates it; readers wait on `_progress`.

    A reader is handed bytes up to `written` but never the last byte before the blob is
    verified and stored, so no client ever receives a complete body with wrong content.
    """

    def __init__(self, digest: Digest, temp_path: Path) -> None:
        self.digest = digest
        self.temp_path = temp_path
        self.size: int | None = None  # announced by the upstream; None if it sent no length
        self.written = 0
        self.error: BaseException | None = None
        self.started = asyncio.Event()  # the upstream answered (or the fill failed)
        self.finished = asyncio.Event()
        self._progress = asyncio.Event()
        # Called once the fill is over (it frees the fill's place under the fill limits).
        self.on_settled: Callable[[], None] = _nothing

    def _notify(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def readable_end(self) -> int:
        """How far readers may read now: the last byte waits until the blob is stored."""
        return self.written if self.finished.is_set() else max(0, self.written - 1)

    async def progressed(self) -> None:
        """Wait until more bytes were written or the fill ended."""
        await self._progress.wait()

    async def wait_started(self) -> None:
        """Wait for the upstream's answer (or the fill's end)."""
        await self.started.wait()

    def reader(self) -> BlobStream:
        """A reader on the growing file; its descriptor stays valid after the rename.

        Call it with no await between checking that the fill still runs and opening, so the
        temp path cannot have been renamed or deleted in between.
        """
        return BlobStream(self, os.open(self.temp_path, os.O_RDONLY))

    async def download(self, open_upstream: OpenUpstream, on_size: OnSize | None = None) -> None:
        """Download, hashing while writing; raise unless size and digest are verified.
        `on_size` is awaited with the announced size once the upstream answered, before the
        body is read (the fill makes room for the blob there)."""
        hasher = self.digest.hasher()
        fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        loop = asyncio.get_running_loop()
        try:
            async with open_upstream() as response:
                self.size = response.content_length
                self.started.set()
                self._notify()
                if on_size is not None and self.size is not None:
                    await on_size(self.size)
                await self._receive(response, hasher, fd)
            if self.size is not None and self.written != self.size:
                raise FillFailed(f"upstream sent {self.written} of {self.size} bytes")
            if hasher.hexdigest() != self.digest.hex:
                raise DigestMismatch(f"upstream bytes do not match {self.digest}")
            await loop.run_in_executor(None, os.fsync, fd)
            self.size = self.written
        finally:
            os.close(fd)

    async def _receive(
        self, response: aiohttp.ClientResponse, hasher: hashlib._Hash, fd: int
    ) -> None:
        """The body into the temp file. Hashing and writing leave the event loop (a slow disk
        or a big hash must not stall other clients) and overlap the next read: one chunk is
        absorbed in a worker thread while the loop receives the next, in order."""
        absorbing: concurrent.futures.Future[None] | None = None
        try:
            async for chunk in response.content.iter_chunked(READ_CHUNK):
                if absorbing is not None:
                    await asyncio.wrap_future(absorbing)  # in order: one chunk at a time
                absorbing = _ABSORBERS.submit(_absorb, hasher, fd, chunk)
                # Readers see a chunk as soon as it is on disk, not when the next one arrives
                # (an upstream may pause before its last bytes).
                asyncio.wrap_future(absorbing).add_done_callback(partial(self._landed, len(chunk)))
            if absorbing is not None:
                # Wrappers of one future complete in the order they were made: the callback
                # above has counted the last chunk when this await returns.
                await asyncio.wrap_future(absorbing)
        except (aiohttp.ClientError, asyncio.IncompleteReadError, TimeoutError) as exc:
            await _finish(absorbing)
            raise FillFailed(
                f"upstream body cut after {self.written} bytes: {type(exc).__name__}"
            ) from None
        except BaseException:
            # A cancelled wait does not stop the thread, and fd closes next: wait for it.
            await _finish(absorbing)
            raise

    def _landed(self, size: int, absorbed: asyncio.Future[None]) -> None:
        """A chunk is hashed and written (in the event loop, from its future's callback)."""
        if not absorbed.cancelled() and absorbed.exception() is None:
            self.written += size
            self._notify()

    def settle(self, error: BaseException | None) -> None:
        """The fill is over: readers get the last byte, or are cut when `error` is set."""
        self.error = error
        self.started.set()
        self.finished.set()
        self._notify()


class BlobStream:
    """One client's reader on a running fill: spans of a range as they arrive, sent with
    sendfile from the temp file.

    sendfile keeps no byte of the blob in the process: a client that reads slowly costs its
    socket's kernel buffer and the connection's bookkeeping, not a chunk in flight and a copy
    of it in the transport's buffer (about 290 KiB each with 128 KiB writes).

    `spans` raises FillFailed when the fill ends without a verified blob: the client must
    then be cut short, so that it never holds a complete body with wrong bytes.
    """

    def __init__(self, fill: Fill, fd: int) -> None:
        self._fill = fill
        self._file = os.fdopen(fd, "rb", buffering=0)

    @property
    def digest(self) -> Digest:
        return self._fill.digest

    @property
    def size(self) -> int | None:
        return self._fill.size

    def close(self) -> None:
        self._file.close()

    async def spans(self, start: int, end: int | None) -> AsyncGenerator[tuple[int, int], None]:
        """(offset, length) spans covering [start, end) of the blob as they become readable;
        end None means to the end."""
        fill = self._fill
        position = start
        while end is None or position < end:
            if fill.error is not None:
                raise FillFailed(str(fill.error))
            available = fill.readable_end()
            if end is not None:
                # A range that ends before the blob does holds back its own last byte too, so
                # a Range client never holds a complete 206 of unverified bytes either.
                available = min(available, end if fill.finished.is_set() else end - 1)
            if position < available:
                length = min(available - position, MAX_SPAN)
                yield position, length
                position += length
            elif fill.finished.is_set():
                if fill.error is not None:
                    raise FillFailed(str(fill.error))
                return  # end None: the whole blob was sent
            else:
                await fill.progressed()

    async def send(self, transport: asyncio.WriteTransport, offset: int, length: int) -> None:
        """Send a span with sendfile (a plain TCP transport: TLS goes through `pieces`);
        FillFailed if the temp file is shorter than reported."""
        loop = asyncio.get_running_loop()
        sent = await loop.sendfile(transport, self._file, offset, length)
        if sent < length:
            raise FillFailed("temp file shorter than reported")

    def pieces(self, offset: int, length: int) -> Iterator[bytes]:
        """A span as bytes, WRITE_CHUNK at a time, for a body that needs framing."""
        end = offset + length
        while offset < end:
            piece = os.pread(self._file.fileno(), min(WRITE_CHUNK, end - offset), offset)
            if not piece:
                raise FillFailed("temp file shorter than reported")
            offset += len(piece)
            yield piece


def _absorb(hasher: hashlib._Hash, fd: int, chunk: bytes) -> None:
    """Hash a chunk and append it to the temp file (runs in a worker thread)."""
    hasher.update(chunk)
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]


async def _finish(absorbing: concurrent.futures.Future[None] | None) -> None:
    """Wait for a chunk still being absorbed, whatever becomes of it: the descriptor it writes
    to closes next. A fresh wrapper each time (the one a cancelled task awaited is cancelled,
    the thread behind it is not), and a second cancellation still waits, then goes on."""
    if absorbing is None:
        return
    cancelled = False
    while not absorbing.done():
        try:
            await asyncio.wait([asyncio.wrap_future(absorbing)])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _nothing() -> None:
    return None
