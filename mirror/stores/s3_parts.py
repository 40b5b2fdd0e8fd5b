"""One object written to the bucket from a local file that may still be growing (a fill's temp
file): parts go up as they fill, and the object appears only when `finish` completes it.

A multipart upload is invisible until completed, so parts sent while the bytes are not yet
verified expose nothing; `abort` (a mismatch, a cut, a cancelled fill) discards them.
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
ERRORS = (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError)


def unavailable(what: str, exc: BaseException) -> Unavailable:
    log.warning("S3 %s failed: %s", what, exc)
    return Unavailable(f"the blob store did not answer ({what}); try again")


class PartUpload:
    """Bytes of `source` to `bucket/key`: `send_ready` while the file grows, then `finish`
    (verified: the object appears) or `abort` (nothing remains). Parts go up one at a time."""

    def __init__(self, client: S3Client, bucket: str, key: str, source: Path) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._source = source
        self._fd: int | None = None  # opened at the first read: the file may not exist yet
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self.sent = 0  # bytes uploaded as parts so far

    async def send_ready(self, written: int) -> None:
        """Upload every whole part below `written` (bytes the file holds now)."""
        while written - self.sent >= PART_SIZE:
            await self._send(PART_SIZE)

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
                    await self._send(size - self.sent)
                assert self._upload_id is not None
                await self._client.complete_multipart_upload(
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts},
                )
                self._upload_id = None
        except ERRORS as exc:
            raise unavailable("upload", exc) from None
        finally:
            self._close()

    async def abort(self) -> None:
        """Discard the parts sent (a failure to abort is logged: the bucket's lifecycle rule
        for incomplete uploads, or a janitor, removes them)."""
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

    async def _send(self, length: int) -> None:
        try:
            if self._upload_id is None:
                created = await self._client.create_multipart_upload(
                    Bucket=self._bucket, Key=self._key
                )
                self._upload_id = created["UploadId"]
            number = len(self._parts) + 1
            body = await self._read(self.sent, length)
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
        self.sent += length

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
