"""Blobs in an S3-compatible bucket (Ceph RGW, SeaweedFS, MinIO, AWS): `{prefix}blobs/<alg>/<hex>`.

Every request is signed by botocore (through aiobotocore, on aiohttp); nothing here signs by
hand. The bucket is shared by every replica configured with it: an object is only ever written
whole (a single PUT, or a multipart upload completed after the last part), and only from a
temp file whose size and digest were verified, so an object under a digest's key always holds
that digest's bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from mirror.config import S3Config
from mirror.errors import FillFailed, Unavailable
from mirror.reference import Digest
from mirror.stores.blob_backend import BlobGone

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

PART_SIZE = 8 * 1024 * 1024  # S3's minimum is 5 MiB (but for the last part)
PARTS_IN_FLIGHT = 2  # bounds the memory of one upload to 2 parts
READ_CHUNK = 1024 * 1024
_ERRORS = (ClientError, BotoCoreError, aiohttp.ClientError, TimeoutError)


def _missing(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 404 or exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")


class S3Blobs:
    """The S3 backend: one aiobotocore client for the process's lifetime."""

    local = False

    def __init__(self, config: S3Config) -> None:
        self.config = config
        self._client: S3Client | None = None
        self._exit = contextlib.AsyncExitStack()
        self._deletes: set[asyncio.Task[None]] = set()

    def key(self, digest: Digest) -> str:
        return f"{self.config.prefix}blobs/{digest.algorithm}/{digest.hex}"

    @property
    def client(self) -> S3Client:
        assert self._client is not None, "S3 backend used before start()"
        return self._client

    async def start(self) -> None:
        """Nothing is asked of the bucket here: a replica starts while the store is away."""
        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},  # S3-compatible servers seldom have bucket DNS
            # botocore would add a CRC32 of every part and check one on every GET: the blob's
            # digest is checked by the fill already.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=64,
            connect_timeout=10,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
        )
        session = get_session()
        self._client = await self._exit.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=None if self.config.endpoint is None else str(self.config.endpoint),
                region_name=self.config.region,
                aws_access_key_id=self.config.access_key,
                aws_secret_access_key=self.config.secret_key,
                config=config,
            )
        )

    async def close(self) -> None:
        if self._deletes:
            await asyncio.gather(*self._deletes, return_exceptions=True)
        await self._exit.aclose()
        self._client = None

    async def size_of(self, digest: Digest) -> int | None:
        try:
            answer = await self.client.head_object(Bucket=self.config.bucket, Key=self.key(digest))
        except ClientError as exc:
            if _missing(exc):
                return None
            raise _unavailable("HEAD", exc) from None
        except _ERRORS as exc:
            raise _unavailable("HEAD", exc) from None
        return int(answer["ContentLength"])

    async def commit(self, temp: Path, digest: Digest, size: int) -> None:
        """Upload the verified temp file: one PUT, or a multipart upload that is completed
        only once every part arrived and aborted on any failure (no half object, no orphan)."""
        bucket, key = self.config.bucket, self.key(digest)
        loop = asyncio.get_running_loop()
        fd = os.open(temp, os.O_RDONLY)
        try:
            if size <= PART_SIZE:
                body = await loop.run_in_executor(None, os.pread, fd, size, 0)
                await self.client.put_object(Bucket=bucket, Key=key, Body=body)
                return
            upload = await self.client.create_multipart_upload(Bucket=bucket, Key=key)
            upload_id = upload["UploadId"]
            try:
                parts = await self._upload_parts(fd, size, key, upload_id)
                await self.client.complete_multipart_upload(
                    Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
            except BaseException:
                with contextlib.suppress(*_ERRORS):
                    await self.client.abort_multipart_upload(
                        Bucket=bucket, Key=key, UploadId=upload_id
                    )
                raise
        except _ERRORS as exc:
            raise _unavailable("upload", exc) from None
        finally:
            os.close(fd)

    async def _upload_parts(
        self, fd: int, size: int, key: str, upload_id: str
    ) -> list[CompletedPartTypeDef]:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(PARTS_IN_FLIGHT)

        async def part(number: int, offset: int) -> CompletedPartTypeDef:
            async with slots:
                length = min(PART_SIZE, size - offset)
                body = await loop.run_in_executor(None, os.pread, fd, length, offset)
                answer = await self.client.upload_part(
                    Bucket=self.config.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                )
                return {"PartNumber": number, "ETag": answer["ETag"]}

        offsets = range(0, size, PART_SIZE)
        # TaskGroup: one failed part cancels the others before the upload is aborted.
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(part(n, o)) for n, o in enumerate(offsets, start=1)]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    def delete(self, digest: Digest) -> None:
        task = asyncio.get_running_loop().create_task(self._delete(digest), name=f"delete {digest}")
        self._deletes.add(task)
        task.add_done_callback(self._deletes.discard)

    async def _delete(self, digest: Digest) -> None:
        try:
            await self.client.delete_object(Bucket=self.config.bucket, Key=self.key(digest))
        except _ERRORS as exc:
            # The row is gone: the object is unreachable through this replica, and a replica
            # that still indexes it finds it (or, once deleted, misses).
            log.warning("could not delete %s from the bucket: %s", digest, exc)

    async def read(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        if start >= end:
            return _nothing()
        try:
            answer = await self.client.get_object(
                Bucket=self.config.bucket, Key=self.key(digest), Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as exc:
            if _missing(exc):
                raise BlobGone(str(digest)) from None
            raise _unavailable("GET", exc) from None
        except _ERRORS as exc:
            raise _unavailable("GET", exc) from None
        return _body(answer["Body"], end - start)

    async def presigned_url(self, digest: Digest) -> str:
        return await self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.config.bucket, "Key": self.key(digest)},
            ExpiresIn=int(self.config.presign_ttl),
        )

    async def matches_digest(self, digest: Digest) -> bool | None:
        size = await self.size_of(digest)
        if size is None:
            return None
        hasher = digest.hasher()
        try:
            async for chunk in await self.read(digest, 0, size):
                hasher.update(chunk)
        except BlobGone:
            return None
        return hasher.hexdigest() == digest.hex


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield


async def _body(body: object, length: int) -> AsyncIterator[bytes]:
    """The object's bytes; FillFailed when the bucket cuts them short (the client is cut too)."""
    stream = body  # aiobotocore's StreamingBody over an aiohttp response
    received = 0
    try:
        async for chunk in stream.iter_chunks(READ_CHUNK):  # type: ignore[attr-defined]
            received += len(chunk)
            yield chunk
    except _ERRORS as exc:
        raise FillFailed(f"bucket body cut after {received} bytes: {type(exc).__name__}") from None
    finally:
        stream.close()  # type: ignore[attr-defined]
    if received != length:
        raise FillFailed(f"bucket sent {received} of {length} bytes")


def _unavailable(what: str, exc: BaseException) -> Unavailable:
    log.warning("S3 %s failed: %s", what, exc)
    return Unavailable(f"the blob store did not answer ({what}); try again")
