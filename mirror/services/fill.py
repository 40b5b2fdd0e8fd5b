"""A fill: one upstream download of a blob, teed to a temp file that every reader follows."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import aiohttp

from mirror.reference import Digest

log = logging.getLogger(__name__)

READ_CHUNK = 1024 * 1024


class FillFailed(Exception):
    """The fill ended without a verified blob; readers must cut their client's connection."""


class DigestMismatch(FillFailed):
    """The upstream's bytes do not hash to the digest asked for."""


class Fill:
    """Progress of one download. Only the fill task mutates it; readers wait on `_progress`.

    A reader is handed bytes up to `written` but never the last byte before the digest is
    verified, so no client ever receives a complete body with wrong content.
    """

    def __init__(self, digest: Digest, repo: str, temp_path: Path) -> None:
        self.digest = digest
        self.repo = repo
        self.temp_path = temp_path
        self.final_path: Path | None = None
        self.size: int | None = None  # announced by the upstream; None if it sent no length
        self.written = 0
        self.error: BaseException | None = None
        self.started = asyncio.Event()  # the upstream answered (or the fill failed)
        self.finished = asyncio.Event()
        self._progress = asyncio.Event()

    @property
    def succeeded(self) -> bool:
        return self.finished.is_set() and self.error is None

    def _notify(self) -> None:
        progress, self._progress = self._progress, asyncio.Event()
        progress.set()

    def _readable_end(self) -> int:
        return self.written if self.finished.is_set() else max(0, self.written - 1)

    async def wait_started(self) -> None:
        """Wait for the upstream's answer; re-raise what made the fill fail before any byte."""
        await self.started.wait()
        if self.error is not None and self.written == 0:
            raise self.error

    def open_reader(self) -> int:
        """A file descriptor on the growing file; valid after the rename, too.

        Must be called without an await between checking the fill and opening, so the
        temp path cannot have been renamed or deleted in between.
        """
        return os.open(self.final_path or self.temp_path, os.O_RDONLY)

    async def read(self, fd: int, start: int, end: int | None) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end) of the blob as they arrive; end None means to the end.

        The caller owns `fd` and closes it.
        """
        position = start
        while end is None or position < end:
            if self.error is not None:
                raise FillFailed(str(self.error))
            available = self._readable_end()
            if end is not None:
                available = min(available, end)
            if position < available:
                chunk = os.pread(fd, min(READ_CHUNK, available - position), position)
                if not chunk:
                    raise FillFailed("temp file shorter than reported")
                position += len(chunk)
                yield chunk
            elif self.finished.is_set():
                if self.error is not None:
                    raise FillFailed(str(self.error))
                return  # end None: the whole blob was sent
            else:
                await self._progress.wait()

    async def run(
        self,
        open_upstream: Callable[[], AbstractAsyncContextManager[aiohttp.ClientResponse]],
        on_verified: Callable[[Fill], Awaitable[None]],
        discard: Callable[[Path], None],
    ) -> None:
        """Download, hash while writing, verify size and digest, then hand over to on_verified."""
        hasher = self.digest.hasher()
        fd = os.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            async with open_upstream() as response:
                self.size = response.content_length
                self.started.set()
                self._notify()
                loop = asyncio.get_running_loop()
                async for chunk in response.content.iter_chunked(READ_CHUNK):
                    # Hashing and writing leave the event loop: a slow disk (dirty-page
                    # throttling) or a big hash must not stall the other clients.
                    await loop.run_in_executor(None, _absorb, hasher, fd, chunk)
                    self.written += len(chunk)
                    self._notify()
            if self.size is not None and self.written != self.size:
                raise FillFailed(f"upstream sent {self.written} of {self.size} bytes")
            if hasher.hexdigest() != self.digest.hex:
                raise DigestMismatch(f"upstream bytes do not match {self.digest}")
            await asyncio.get_running_loop().run_in_executor(None, os.fsync, fd)
            self.size = self.written
            await on_verified(self)
        except asyncio.CancelledError:
            self.error = FillFailed("fill cancelled")
            discard(self.temp_path)
            raise
        except Exception as exc:
            log.warning("fill of %s failed: %s", self.digest, exc)
            self.error = exc
            discard(self.temp_path)
        finally:
            os.close(fd)
            self.started.set()
            self.finished.set()
            self._notify()


def _absorb(hasher: hashlib._Hash, fd: int, chunk: bytes) -> None:
    """Hash a chunk and append it to the temp file (runs in a worker thread)."""
    hasher.update(chunk)
    view = memoryview(chunk)
    while view:
        view = view[os.write(fd, view) :]
