"""Sending a blob: a stored file with sendfile, a running fill's bytes as they arrive
(sendfile too, from the fill's temp file), or an object in the bucket (socket to socket by the
kernel when it can, web/bucket_relay.py; streamed otherwise).

Both follow one Range rule, decided here by `parse_range` before any byte goes out: one
satisfiable range is a 206; several ranges, another unit or anything unparsable is the whole
blob (200), as RFC 9110 allows; an unsatisfiable range is a 416 with an OCI body and
`Content-Range: bytes */SIZE`. aiohttp's FileResponse only ever sees the range decided here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO, Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict, CIMultiDictProxy

from mirror.errors import FillFailed, RangeInvalid
from mirror.reference import Digest
from mirror.services.blobs import BlobService
from mirror.services.bucket_objects import BucketBlob
from mirror.services.fill import BlobStream
from mirror.stores.s3_body import BucketBody
from mirror.web import bucket_relay
from mirror.web.appkeys import BODY_SENT, MIRROR
from mirror.web.middleware import error_response
from mirror.web.ranges import ByteRange, parse_range

log = logging.getLogger(__name__)

# What FileResponse must not decide for itself: the range (decided here), and the preconditions
# a fill ignores. A blob is named by its digest and never changes, so If-Range and If-Match
# change nothing about its bytes; FileResponse would answer them with its own mtime-based
# ETag, and a 412 without an OCI body. If-None-Match and If-Modified-Since may still be 304.
_DECIDED_HERE = ("Range", "If-Range", "If-Match", "If-Unmodified-Since")


def requested_range(request: web.BaseRequest, size: int | None) -> ByteRange | None:
    """The one range to send, None for the whole blob; RangeInvalid when unsatisfiable.
    Two Range lines are several ranges: the whole blob."""
    lines = request.headers.getall("Range", [])
    return parse_range(lines[0], size) if len(lines) == 1 else None


def unsatisfiable(error: RangeInvalid, size: int, headers: dict[str, str]) -> web.Response:
    """416: the OCI body, the blob's own headers but its type, and the size."""
    response = error_response(error)
    response.headers.update({k: v for k, v in headers.items() if k.lower() != "content-type"})
    response.headers["Content-Range"] = f"bytes */{size}"
    return response


def _file_request_headers(
    headers: CIMultiDictProxy[str], byte_range: ByteRange | None
) -> CIMultiDict[str]:
    kept = CIMultiDict(headers)
    for name in _DECIDED_HERE:
        kept.popall(name, None)
    if byte_range is not None:
        kept["Range"] = f"bytes={byte_range.start}-{byte_range.end - 1}"
    return kept


class PreparedFileResponse(web.FileResponse):
    """A FileResponse the handler sends itself, so the blob counts as in use until the last
    byte went out; aiohttp's own prepare() after the handler returns is then a no-op."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)

    async def _sendfile(
        self, request: web.BaseRequest, fobj: IO[Any], offset: int, count: int
    ) -> AbstractStreamWriter:
        """Over TLS, aiohttp's own chunked writes: asyncio has no sendfile for TLS, and its
        fallback swaps the connection's protocol meanwhile, which leaves aiohttp's flow control
        wrong when the client was slow (an AssertionError in resume_writing on a later send)."""
        transport = request.transport
        if transport is None or transport.get_extra_info("ssl_object") is None:
            return await super()._sendfile(request, fobj, offset, count)
        writer = await web.StreamResponse.prepare(self, request)
        assert writer is not None
        return await self._sendfile_fallback(writer, fobj, offset, count)


async def send_stored(
    request: web.Request, path: Path, size: int, headers: dict[str, str]
) -> web.StreamResponse:
    """sendfile by aiohttp's FileResponse, which is handed the range decided here (and answers
    If-None-Match / If-Modified-Since)."""
    try:
        byte_range = requested_range(request, size)
    except RangeInvalid as exc:
        return unsatisfiable(exc, size, headers)
    response = PreparedFileResponse(path, headers=headers)
    # The same request for FileResponse (same connection and writer), minus what is decided here.
    as_decided = request.clone(headers=_file_request_headers(request.headers, byte_range))
    try:
        await response.prepare(as_decided)
    except ConnectionError:
        return response  # the client went away mid-transfer
    if response.status in (200, 206):
        served = request.app[MIRROR].metrics.served_bytes.labels("cache")
        served.inc(response.content_length or 0)
    return response


async def send_bucket(
    request: web.Request, service: BlobService, blob: BucketBlob, headers: dict[str, str]
) -> web.StreamResponse:
    """Stream a blob from the bucket with the range decided here; BlobGone (from the bucket's
    answer, before the head goes out) when another replica removed it. A body the bucket cuts
    short cuts the client short too."""
    try:
        byte_range = requested_range(request, blob.size)
    except RangeInvalid as exc:
        return unsatisfiable(exc, blob.size, headers)
    start, end = (0, blob.size) if byte_range is None else (byte_range.start, byte_range.end)
    body = await service.bucket.read(blob, start, end)
    response = web.StreamResponse(headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    if byte_range is not None:
        response.set_status(206)
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{blob.size}"
    response.content_length = end - start
    served = request.app[MIRROR].metrics.served_bytes.labels("cache")

    def sent(count: int) -> None:
        served.inc(count)
        request[BODY_SENT] += count

    try:
        await response.prepare(request)
        request[BODY_SENT] = 0
        # Socket to socket by the kernel when both ends are plain TCP (web/bucket_relay.py).
        client = bucket_relay.client_socket(request)
        source = body.take_socket() if client is not None and isinstance(body, BucketBody) else None
        if client is not None and source is not None:
            if source.early:
                await response.write(source.early)
                sent(len(source.early))
            await bucket_relay.relay(request, client, source, sent)
        else:
            async for chunk in body:
                await response.write(chunk)
                sent(len(chunk))
    except FillFailed as exc:
        return _cut(request, response, blob.digest, exc)
    except ConnectionError:
        return response
    finally:
        await body.aclose()  # type: ignore[attr-defined]
    await response.write_eof()
    return response


async def redirect_to_bucket(
    service: BlobService, blob: BucketBlob, headers: dict[str, str]
) -> web.StreamResponse:
    """307 to a presigned URL of the object (as Docker Hub sends clients to its CDN); the
    client repeats its Range there. BlobGone when the object is not there."""
    location = await service.bucket.redirect_url(blob)
    response = web.Response(status=307, headers=headers)
    response.headers["Location"] = location
    response.content_type = "text/plain"
    return response


async def send_stream(
    request: web.Request, stream: BlobStream, headers: dict[str, str]
) -> web.StreamResponse:
    """Follow a running fill; cut the connection if it fails, so the client sees a short body
    and never a complete one with wrong bytes."""
    try:
        byte_range = requested_range(request, stream.size)
    except RangeInvalid as exc:
        assert stream.size is not None  # only a known size makes a range unsatisfiable
        return unsatisfiable(exc, stream.size, headers)
    response = web.StreamResponse(headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    start, end = 0, stream.size
    if byte_range is not None and stream.size is not None:
        start, end = byte_range.start, byte_range.end
        response.set_status(206)
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{stream.size}"
    if end is not None:
        response.content_length = end - start
    spans = stream.spans(start, end)
    served = request.app[MIRROR].metrics.served_bytes.labels("fill")
    try:
        await response.prepare(request)
        request[BODY_SENT] = 0
        async for offset, length in spans:
            await _send_span(request, response, stream, offset, length)
            served.inc(length)
            request[BODY_SENT] += length
    except FillFailed as exc:
        return _cut(request, response, stream.digest, exc)
    except ConnectionError:
        return response  # the client went away; the fill goes on without it
    finally:
        await spans.aclose()
    await response.write_eof()
    return response


async def _send_span(
    request: web.Request, response: web.StreamResponse, stream: BlobStream, offset: int, length: int
) -> None:
    """With sendfile, so a slow client holds no bytes of the blob in memory. A body without a
    length is chunked, and its framing is aiohttp's writer's: pieces go through it. So do the
    pieces of a TLS connection: asyncio has no sendfile for it, and its fallback swaps the
    connection's protocol meanwhile, which breaks aiohttp's flow control when the client is
    slow (an AssertionError in resume_writing, the client cut)."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away")
    if response.content_length is None or transport.get_extra_info("ssl_object") is not None:
        for piece in stream.pieces(offset, length):
            await response.write(piece)
        return
    await stream.send(transport, offset, length)  # after the head, still in the buffer


def _cut(
    request: web.Request, response: web.StreamResponse, digest: Digest, why: FillFailed
) -> web.StreamResponse:
    """The bytes being sent cannot be vouched for (a failed fill, a cut bucket read): abort the
    connection, so the client holds a short body, never a complete one of wrong bytes."""
    log.warning("cutting a client of %s: %s", digest, why)
    request.app[MIRROR].metrics.clients_cut.inc()
    if request.transport is not None:
        request.transport.abort()
    return response
