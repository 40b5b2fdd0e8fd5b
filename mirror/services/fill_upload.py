"""A fill's bytes sent to the bucket while they arrive: one more follower of the temp file.

The download is never held up by the bucket: the follower reads whole parts back from the temp
file (written already) and uploads them behind the download, a few at once (PartUpload). Only
after size and digest are verified does `finish` send the rest and complete the upload; a
mismatch, a cut or a cancelled fill `abort`s it, so no object and no orphaned upload remain.
"""

from __future__ import annotations

import asyncio
import contextlib

from mirror.services.fill import Fill
from mirror.stores.blob_backend import Upload


class FillUpload:
    def __init__(self, fill: Fill, upload: Upload) -> None:
        self._fill = fill
        self._upload = upload
        self._downloaded = asyncio.Event()
        self._task = asyncio.create_task(self._follow(), name=f"upload {fill.digest}")

    async def _follow(self) -> None:
        """Whole parts as the temp file grows, until the download is over."""
        fill = self._fill
        while not self._downloaded.is_set():
            await self._upload.send_ready(fill.written)
            progressed = asyncio.ensure_future(fill.progressed())
            downloaded = asyncio.ensure_future(self._downloaded.wait())
            try:
                await asyncio.wait((progressed, downloaded), return_when=asyncio.FIRST_COMPLETED)
            finally:
                progressed.cancel()
                downloaded.cancel()

    async def finish(self, size: int) -> None:
        """Called once the blob is verified: the rest goes up and the object appears. Raises
        what a part upload raised (the fill then fails, and is aborted)."""
        self._downloaded.set()
        await self._task
        await self._upload.finish(size)

    async def abort(self) -> None:
        self._downloaded.set()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        await self._upload.abort()
