"""Fault injection for the fake hub: the switches, and a blob sender that obeys them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import web

CHUNK = 64 * 1024
# A gate nobody opens must not hang the suite: the sender gives up and cuts the body.
GATE_TIMEOUT = 30.0
# Bytes flipped for `blob_wrong_bytes`: same length, every byte different.
_FLIP = bytes(255 - i for i in range(256))


@dataclass(slots=True)
class Faults:
    """Failure switches; a test sets what it needs, all are off by default."""

    blob_reset_after: int | None = None
    blob_wrong_bytes: bool = False
    blob_empty: bool = False  # 200 with Content-Length: 0
    blob_chunk_delay: float = 0.0
    blob_gate: asyncio.Event | None = None
    # Send the body chunked (no Content-Length) and hold its end until this is set.
    blob_hold_end: asyncio.Event | None = None
    registry_status: int | None = None
    # The Retry-After a 429 carries: seconds, or any text (an HTTP-date, "inf").
    rate_limited: int | str | None = None
    token_down: bool = False
    manifest_delay: float = 0.0
    manifest_gate: asyncio.Event | None = None
    # Docker-Content-Digest of a manifest answer: the digest it is stored under ("stored"),
    # the digest of the bytes sent ("body"), or no header at all ("absent").
    manifest_digest_header: str = "stored"
    tags_delay: float = 0.0  # the tag list answers this late
    # The token server answers this status instead of a token (401/403: refused; 5xx: failed).
    token_status: int | None = None
    # The token server waits this long before answering (a hung token server).
    token_delay: float = 0.0
    # The registry rejects every token, fresh ones too, with error="invalid_token" (it cannot
    # verify its token server's signatures: a rotated key, a clock far off).
    reject_tokens: bool = False


async def send_blob(
    request: web.Request, data: bytes, faults: Faults, extra: dict[str, str]
) -> web.StreamResponse:
    """Serve blob bytes as a CDN does, bent by whichever blob faults are switched on."""
    headers = {"Content-Type": "application/octet-stream", **extra}
    if request.method == "HEAD":
        return web.Response(body=data, headers=headers)  # aiohttp sends no body for HEAD
    if faults.blob_empty:
        return web.Response(body=b"", headers=headers)
    body = data.translate(_FLIP) if faults.blob_wrong_bytes else data
    if faults.blob_reset_after is not None:
        body = body[: faults.blob_reset_after]
    response = web.StreamResponse(headers=headers)
    if faults.blob_hold_end is None:
        # The full length is announced even when the body will be cut short.
        response.content_length = len(data)
    await response.prepare(request)
    try:
        await _write(response, body, faults)
    except TimeoutError:
        body = b""  # the gate never opened: cut the body below
    if len(body) < len(data):
        # An abort (RST), not a clean close: what a reset connection looks like to the mirror.
        if request.transport is not None:
            request.transport.abort()
        return response
    if faults.blob_hold_end is not None:
        # Every byte is out; the end of the chunked body (and so of the response) waits.
        await asyncio.wait_for(faults.blob_hold_end.wait(), GATE_TIMEOUT)
    await response.write_eof()
    return response


async def _write(response: web.StreamResponse, body: bytes, faults: Faults) -> None:
    gate, delay = faults.blob_gate, faults.blob_chunk_delay
    half = len(body) // 2 if gate is not None else len(body)
    # First half (or everything) in chunks, then, behind the gate, the rest.
    for start, end in ((0, half), (half, len(body))):
        if start > 0 and gate is not None:
            await asyncio.wait_for(gate.wait(), GATE_TIMEOUT)
        for pos in range(start, end, CHUNK):
            await response.write(body[pos : min(pos + CHUNK, end)])
            if delay:
                await asyncio.sleep(delay)
