"""A ranged GET's body from the bucket: read through aiohttp in 1 MiB pieces, or its socket
handed over whole so the kernel moves the bytes to the client (web/bucket_relay.py).

Either way exactly `length` bytes are the body: fewer (the bucket cut it) is a FillFailed that
cuts the client too, so a client never holds a complete body of wrong bytes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp

from mirror.errors import FillFailed
from mirror.stores.s3_parts import ERRORS

READ_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BodySocket:
    """The bucket connection's socket, reading through aiohttp stopped: `early` is what aiohttp
    had read of the body already; the rest, `length - len(early)` bytes, is on the socket."""

    fd: int  # valid until the body is closed
    early: bytes
    length: int
    timeout: float  # seconds the bucket may send nothing before the body counts as cut


class BucketBody:
    """`length` bytes of an object, as aiobotocore's StreamingBody returned them."""

    def __init__(self, body: Any, length: int, timeout: float) -> None:
        self._body = body  # aiobotocore's StreamingBody over an aiohttp ClientResponse
        self.length = length
        self._timeout = timeout
        self._chunks = _chunks(body, length)

    def __aiter__(self) -> BucketBody:
        return self

    async def __anext__(self) -> bytes:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        """Stop reading; the connection goes back to the pool only if the body was read whole
        through aiohttp (a handed-over socket's connection is closed)."""
        await self._chunks.aclose()
        self._body.close()

    def take_socket(self) -> BodySocket | None:
        """The socket, for a kernel copy; None when that cannot be done: TLS (the bytes on the
        socket are not the body), a body that is not raw bytes, a connection aiohttp already
        released (it read the whole body), or no socket at all."""
        response: aiohttp.ClientResponse = self._body.raw_stream
        connection = response.connection
        if connection is None or connection.transport is None or connection.protocol is None:
            return None
        transport = connection.transport
        sock = transport.get_extra_info("socket")
        if transport.get_extra_info("ssl_object") is not None or sock is None:
            return None
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
            return None
        if "Transfer-Encoding" in response.headers or "Content-Encoding" in response.headers:
            return None
        if response.content_length != self.length or response.content.exception() is not None:
            return None
        # No await from here on: nothing else can read the socket between taking what aiohttp
        # buffered and stopping aiohttp's reading.
        early = response.content.read_nowait(-1)
        if len(early) > self.length:  # aiohttp's framing by Content-Length rules this out
            raise FillFailed(f"the bucket sent {len(early)} bytes of a {self.length}-byte body")
        connection.protocol.pause_reading()
        return BodySocket(sock.fileno(), early, self.length, self._timeout)


async def _chunks(body: Any, length: int) -> AsyncGenerator[bytes, None]:
    """The object's bytes, READ_CHUNK at a time (aiohttp hands over whatever arrived, often
    64 KiB: a write per such piece costs the client a third of its throughput); FillFailed
    when the bucket cuts them short (the client is cut too)."""
    content: aiohttp.StreamReader = body.raw_stream.content
    received = 0
    try:
        while received < length:
            chunk = await content.readexactly(min(READ_CHUNK, length - received))
            received += len(chunk)
            yield chunk
    except (asyncio.IncompleteReadError, *ERRORS) as exc:
        raise FillFailed(f"bucket body cut after {received} bytes: {type(exc).__name__}") from None
    finally:
        body.close()
