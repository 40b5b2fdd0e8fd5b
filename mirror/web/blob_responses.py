"""Sending a blob: a stored file with sendfile, or a running fill's bytes as they arrive."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from mirror.errors import FillFailed
from mirror.services.fill import BlobStream
from mirror.web.appkeys import BODY_SENT, MIRROR
from mirror.web.ranges import parse_range

log = logging.getLogger(__name__)


class PreparedFileResponse(web.FileResponse):
    """A FileResponse the handler sends itself, so the blob counts as in use until the last
    byte went out; aiohttp's own prepare() after the handler returns is then a no-op."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


async def send_stored(
    request: web.Request, path: Path, headers: dict[str, str]
) -> web.StreamResponse:
    """sendfile, with Range and conditional requests handled by aiohttp."""
    response = PreparedFileResponse(path, headers=headers)
    try:
        await response.prepare(request)
    except ConnectionError:
        return response  # the client went away mid-transfer
    if response.status in (200, 206):
        served = request.app[MIRROR].metrics.served_bytes.labels("cache")
        served.inc(response.content_length or 0)
    return response


async def send_stream(
    request: web.Request, stream: BlobStream, headers: dict[str, str]
) -> web.StreamResponse:
    """Follow a running fill; cut the connection if it fails, so the client sees a short body
    and never a complete one with wrong bytes."""
    byte_range = parse_range(request.headers.get("Range"), stream.size)
    response = web.StreamResponse(headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    start, end = 0, stream.size
    if byte_range is not None and stream.size is not None:
        start, end = byte_range.start, byte_range.end
        response.set_status(206)
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{stream.size}"
    if end is not None:
        response.content_length = end - start
    chunks = stream.chunks(start, end)
    served = request.app[MIRROR].metrics.served_bytes.labels("fill")
    try:
        await response.prepare(request)
        request[BODY_SENT] = 0
        async for chunk in chunks:
            await response.write(chunk)
            served.inc(len(chunk))
            request[BODY_SENT] += len(chunk)
    except FillFailed as exc:
        log.warning("cutting a client of %s: %s", stream.digest, exc)
        request.app[MIRROR].metrics.clients_cut.inc()
        if request.transport is not None:
            request.transport.abort()
        return response
    except ConnectionError:
        return response  # the client went away; the fill goes on without it
    finally:
        await chunks.aclose()
    await response.write_eof()
    return response
