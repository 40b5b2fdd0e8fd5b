"""One object written to the bucket from a local file that may still be growing (a fill's temp
file): parts go up as they fill, and the object appears only when `finish` completes it.

A multipart upload is invisible until completed, so parts sent while the bytes are not yet
verified expose nothing; `abort` (a mismatch, a cut, a cancelled fill) discards them.

Up to PARTS_IN_FLIGHT parts go up at once: one part at a time left SeaweedFS waiting on each
answer (93 MiB/s with 8 MiB parts on the bench machine, 148 with two at once, 167 with three;
16 MiB parts gained nothing over 8). Each part in flight holds its bytes in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from botocore.exceptions import BotoCoreError, ClientError

from mirror.errors import Unavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # S3's minimum is 5 MiB (but for the last part)
PARTS_IN_FLIGHT = 3
ERRORS = (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError)


def unavailable(what: str, exc: BaseException) -> Unavailable:
    log.warning("S3 %s failed: %s", what, exc)
    return Unavailable(f"the blob store did not answer ({what}); try again")


class PartUpload:
    """Bytes of `source` to `bucket/key`: `send_ready` while the file grows, then `finish`
    (verified: the object appears) or `abort` (nothing remains)."""

    def __init__(self, client: S3Client, bucket: str, key: str, source: Path) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._source = source
        self._fd: int | None = None  # opened at the first read: the file may not exist yet
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._numbered = 0  # parts begun so far
        self.sent = 0  # bytes handed to part uploads so far (up, or in flight)

    async def send_ready(self, written: int) -> None:
        """Start uploading every whole part below `written` (bytes the file holds now); waits
        only while PARTS_IN_FLIGHT are up already. Raises what a finished part raised."""
        while written - self.sent >= PART_SIZE:
            await self._start_part(PART_SIZE)

    async def finish(self, size: int) -> None:
        """The file's `size` bytes are verified: upload what is left and make the object
        visible (a blob smaller than a part goes up as one PUT)."""
        try:
            if self._upload_id is None and size <= PART_SIZE:
                body = await self._read(0, size)
                await self._client.put_object(Bucket=self._bucket, Key=self._key, Body=body)
            else:
                await self.send_ready(size)
                if size > self.sent:
                    await self._start_part(size - self.sent)
                while self._in_flight:
                    await self._settle(asyncio.ALL_COMPLETED)
                assert self._upload_id is not None
                await self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": sorted(self._parts, key=lambda p: p["PartNumber"])},
                )
                self._upload_id = None
        except ERRORS as exc:
            raise unavailable("upload", exc) from None
        finally:
            await self._stop_parts()  # none left but on a failure (the caller aborts then)
            self._close()

    async def abort(self) -> None:
        """Stop the parts in flight, then discard the parts sent (a failure to abort is logged:
        the bucket's lifecycle rule for incomplete uploads, or the janitor, removes them)."""
        await self._stop_parts()
        self._close()
        if self._upload_id is None:
            return
        upload_id, self._upload_id = self._upload_id, None
        try:
            await self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=upload_id
            )
        except ERRORS as exc:
            log.warning("could not abort the upload of %s: %s", self._key, exc)

    async def _start_part(self, length: int) -> None:
        while len(self._in_flight) >= PARTS_IN_FLIGHT:
            await self._settle(asyncio.FIRST_COMPLETED)
        try:
            if self._upload_id is None:
                created = await self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key
                )
                self._upload_id = created["UploadId"]
        except ERRORS as exc:
            raise unavailable("upload", exc) from None
        self._numbered += 1
        number = self._numbered
        task = asyncio.create_task(self._send(number, self.sent, length), name=f"part {number}")
        self._in_flight.add(task)
        self.sent += length

    async def _stop_parts(self) -> None:
        """Cancel the parts in flight and wait for them: none reads the file once closed."""
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()

    async def _settle(self, when: str) -> None:
        """Wait for parts in flight (one, or all); the first failure among them is raised."""
        done, _ = await asyncio.wait(self._in_flight, return_when=when)
        self._in_flight -= done
        failures = [error for error in (task.exception() for task in done) if error is not None]
        if failures:
            raise failures[0]

    async def _send(self, number: int, offset: int, length: int) -> None:
        assert self._upload_id is not None
        body = await self._read(offset, length)
        try:
            answer = await self._client.upload_part(
                Bucket=self._bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
            )
        except ERRORS as exc:
            raise unavailable("upload", exc) from None
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    async def _read(self, offset: int, length: int) -> bytes:
        if self._fd is None:
            self._fd = os.open(self._source, os.O_RDONLY)
        loop = asyncio.get_running_loop()
        body = await loop.run_in_executor(None, os.pread, self._fd, length, offset)
        if len(body) != length:
            raise Unavailable(f"{self._source} is shorter than the bytes to upload")
        return body

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
