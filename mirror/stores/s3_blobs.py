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
import io
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from mirror.bucket_metrics import BucketMetrics
from mirror.config import S3Config
from mirror.reference import Digest
from mirror.stores.blob_backend import BlobGone
from mirror.stores.s3_body import BucketBody
from mirror.stores.s3_checks import ObjectChecks
from mirror.stores.s3_parts import ERRORS, PartUpload, unavailable
from mirror.stores.s3_presign import Operation, PresignedUrls
from mirror.stores.s3_seen import SeenObjects

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger(__name__)

READ_TIMEOUT = 60.0  # seconds the bucket may send nothing before a request counts as failed
CHECK_TIMEOUT = 5.0  # seconds for the readiness check's HEAD of the bucket


def missing(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status == 404 or exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404")


class S3Blobs:
    """The S3 backend: one aiobotocore client for the process's lifetime."""

    local = False

    def __init__(self, config: S3Config, metrics: BucketMetrics | None = None) -> None:
        self.config = config
        self._metrics = metrics
        self._client: S3Client | None = None
        self._exit = contextlib.AsyncExitStack()
        self._deletes: set[asyncio.Task[None]] = set()
        self._problem: str | None = None  # what the last check found (logged when it changes)
        self._first_check: asyncio.Task[str | None] | None = None
        self._seen = SeenObjects(config.redirect_memo, time.monotonic)
        self._urls = PresignedUrls(self._sign, config.presign_ttl, time.monotonic)
        timeout = aiohttp.ClientTimeout(sock_connect=10, sock_read=READ_TIMEOUT)
        self._checks = ObjectChecks(self._urls, self.key, self._head, metrics, timeout)

    def key(self, digest: Digest) -> str:
        return f"{self.config.prefix}blobs/{digest.algorithm}/{digest.hex}"

    @property
    def client(self) -> S3Client:
        assert self._client is not None, "S3 backend used before start()"
        return self._client

    async def start(self) -> None:
        """Nothing here waits for the bucket: a replica starts while the store is away (the
        first check runs behind, and says so in one line when the bucket refuses)."""
        config = AioConfig(
            signature_version="s3v4",
            s3={"addressing_style": "path"},  # S3-compatible servers seldom have bucket DNS
            # botocore would add a CRC32 of every part and check one on every GET: the blob's
            # digest is checked by the fill already.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=64,
            connect_timeout=10,
            read_timeout=READ_TIMEOUT,
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
        if self._metrics is not None:
            # botocore's own events see every call, paginators and presigned URLs aside.
            events = self._client.meta.events
            events.register("before-parameter-build.s3", self._parameters)
            events.register("before-call.s3", self._call_started)
            events.register("after-call.s3", self._call_answered)
            events.register("after-call-error.s3", self._call_failed)
        self._checks.start(None if self.config.endpoint is None else self.config.endpoint.host)
        # Not awaited: a replica starts while the store is away; wrong credentials or a
        # missing bucket still get their one error line at once, and /readyz says 503.
        self._first_check = asyncio.create_task(self.check(), name="s3 check")

    async def check(self) -> str | None:
        """The bucket answers this replica's credentials (a HEAD of the bucket)."""
        bucket = self.config.bucket
        problem: str | None = None
        try:
            await asyncio.wait_for(self.client.head_bucket(Bucket=bucket), CHECK_TIMEOUT)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            # A HEAD's answer has no body: botocore then names the error by its status.
            code = error.get("Code", "")
            problem = f"bucket {bucket}: {status} {'' if code == str(status) else code}".strip()
            if status in (401, 403):
                problem += " (check storage.s3 access_key and secret_key)"
            elif status == 404:
                problem += " (no such bucket: create it, or check storage.s3.bucket)"
        except ERRORS as exc:  # ClientError is caught above: what is left never answered
            where = self.config.endpoint or "the default endpoint"
            problem = f"bucket {bucket}: unreachable at {where} ({type(exc).__name__})"
        if problem != self._problem:
            if problem is not None:
                log.error("S3 store unusable: %s", problem)
            else:
                log.info("S3 bucket %s usable again", bucket)
            self._problem = problem
        return problem

    def _parameters(self, params: Any, **_: Any) -> None:
        """The call's own parameters: a part's or a PUT's blob bytes, counted as sent."""
        assert self._metrics is not None
        body = params.get("Body") if isinstance(params, dict) else None
        if isinstance(body, io.BytesIO):  # botocore has wrapped the bytes by now
            self._metrics.bytes.labels("out").inc(body.getbuffer().nbytes)
        elif isinstance(body, bytes | bytearray | memoryview):
            self._metrics.bytes.labels("out").inc(len(body))

    def _call_started(self, context: Any, **_: Any) -> None:
        context["mirror_started"] = time.perf_counter()

    def _call_answered(
        self, model: Any, http_response: Any, parsed: Any, context: Any, **_: Any
    ) -> None:
        assert self._metrics is not None
        took = time.perf_counter() - context.get("mirror_started", time.perf_counter())
        self._metrics.answered(model.name, int(http_response.status_code), took)
        if model.name == "GetObject" and isinstance(parsed, dict):
            self._metrics.bytes.labels("in").inc(int(parsed.get("ContentLength") or 0))

    def _call_failed(self, model: Any, context: Any, **_: Any) -> None:
        assert self._metrics is not None
        took = time.perf_counter() - context.get("mirror_started", time.perf_counter())
        self._metrics.failed(model.name, took)

    async def abort_abandoned(self, now: float) -> int:
        """Abort the multipart uploads under this prefix begun more than `abandoned_after`
        ago: fills of a replica that died mid-download (their object never appeared)."""
        cutoff = now - self.config.abandoned_after
        aborted = 0
        paginator = self.client.get_paginator("list_multipart_uploads")
        pages = paginator.paginate(Bucket=self.config.bucket, Prefix=f"{self.config.prefix}blobs/")
        async for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"].timestamp() >= cutoff:
                    continue
                with contextlib.suppress(ClientError):  # gone meanwhile: someone else's abort
                    await self.client.abort_multipart_upload(
                        Bucket=self.config.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        if aborted:
            log.warning("aborted %d multipart uploads abandoned by a stopped replica", aborted)
        return aborted

    async def settled(self) -> None:
        """Wait for the deletes in flight."""
        if self._deletes:
            await asyncio.gather(*self._deletes, return_exceptions=True)

    async def close(self) -> None:
        if self._first_check is not None:
            self._first_check.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._first_check
        await self.settled()
        await self._checks.close()
        await self._exit.aclose()
        self._client = None

    async def size_of(self, digest: Digest) -> int | None:
        """Asked of the bucket now (a HEAD on a presigned URL: s3_checks)."""
        return await self._checks.size(digest)

    async def _head(self, digest: Digest) -> int | None:
        """The HEAD through aiobotocore: its retries, and its reading of a failure."""
        try:
            answer = await self.client.head_object(Bucket=self.config.bucket, Key=self.key(digest))
        except ClientError as exc:
            if missing(exc):
                return None
            raise unavailable("HEAD", exc) from None
        except ERRORS as exc:
            raise unavailable("HEAD", exc) from None
        return int(answer["ContentLength"])

    def begin_upload(self, source: Path, digest: Digest) -> PartUpload:
        """An upload that follows a growing file; the object appears only at `finish`."""
        return PartUpload(self.client, self.config.bucket, self.key(digest), source)

    async def commit(self, temp: Path, digest: Digest, size: int) -> None:
        """Upload a verified temp file (admit: a bundle import, or a fill that did not stream):
        one PUT, or a multipart upload completed only after its last part and aborted on any
        failure (no half object, no orphaned upload)."""
        upload = self.begin_upload(temp, digest)
        try:
            await upload.finish(size)
        except BaseException:
            await upload.abort()
            raise

    def delete(self, digest: Digest) -> None:
        self._seen.forget(digest)  # this replica never redirects to what it deleted
        task = asyncio.get_running_loop().create_task(self._delete(digest), name=f"delete {digest}")
        self._deletes.add(task)
        task.add_done_callback(self._deletes.discard)

    async def _delete(self, digest: Digest) -> None:
        # The row is gone: the object is unreachable through this replica, and a replica
        # that still indexes it finds it (or, once deleted, misses).
        await self.remove(digest)

    async def remove(self, digest: Digest) -> bool:
        try:
            await self.client.delete_object(Bucket=self.config.bucket, Key=self.key(digest))
        except ERRORS as exc:
            log.warning("could not delete %s from the bucket: %s", digest, exc)
            return False
        return True

    async def read(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        if start >= end:
            return _nothing()
        try:
            answer = await self.client.get_object(
                Bucket=self.config.bucket, Key=self.key(digest), Range=f"bytes={start}-{end - 1}"
            )
        except ClientError as exc:
            if missing(exc):
                raise BlobGone(str(digest)) from None
            raise unavailable("GET", exc) from None
        except ERRORS as exc:
            raise unavailable("GET", exc) from None
        return BucketBody(answer["Body"], end - start, READ_TIMEOUT)

    async def presigned_url(self, digest: Digest) -> str | None:
        """None when the object is not there (a client sent to it would get the bucket's 404):
        asked with a HEAD, unless seen less than `redirect_memo` ago (s3_seen)."""
        if not self._seen.recent(digest):
            if await self.size_of(digest) is None:
                self._seen.forget(digest)
                return None
            self._seen.saw(digest)
        return await self._urls.url("get_object", self.key(digest))

    async def _sign(self, operation: Operation, key: str, seconds: int) -> str:
        params = {"Bucket": self.config.bucket, "Key": key}
        return await self.client.generate_presigned_url(operation, Params=params, ExpiresIn=seconds)

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
