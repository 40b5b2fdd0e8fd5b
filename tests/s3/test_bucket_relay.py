"""web/bucket_relay.py between real TCP sockets: a stand-in bucket (a socket server that sends
some bytes, then closes or falls silent) and an aiohttp server relaying them to an aiohttp
client. The body arrives byte-identical when the bucket sends it whole; a bucket that ends early
or falls silent is a FillFailed, and the client is cut short: never a complete wrong body."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mirror.errors import FillFailed
from mirror.stores.s3_body import BodySocket
from mirror.web import bucket_relay

pytestmark = pytest.mark.skipif(not bucket_relay.AVAILABLE, reason="no os.splice here")

SIZE = 5 * 1024 * 1024 + 123
EARLY = 1000  # bytes "aiohttp had read already": sent through the response before the relay


@dataclass
class Bucket:
    """Sends the body's bytes after EARLY up to `sends`, then closes; or, with `hold`, keeps
    the connection open and silent until `release`."""

    data: bytes
    sends: int
    hold: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(self.data[EARLY : self.sends])
        await writer.drain()
        if self.hold:
            await self.release.wait()
        writer.close()


@dataclass
class Relay:
    url: str
    relayed: int = 0
    error: FillFailed | None = None
    client_gone: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def relaying(bucket: Bucket, silence: float) -> AsyncIterator[Relay]:
    upstream = await asyncio.start_server(bucket.serve, "127.0.0.1", 0)
    port = upstream.sockets[0].getsockname()[1]
    app = web.Application()
    server = TestServer(app, host="127.0.0.1")
    relay = Relay("")

    async def handler(request: web.Request) -> web.StreamResponse:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setblocking(False)
        source = BodySocket(sock.fileno(), bucket.data[:EARLY], len(bucket.data), silence)
        response = web.StreamResponse()
        response.content_length = len(bucket.data)
        await response.prepare(request)
        client = bucket_relay.client_socket(request)
        assert client is not None, "plain TCP at both ends: the relay applies"

        def sent(count: int) -> None:
            relay.relayed += count

        try:
            await response.write(source.early)
            await bucket_relay.relay(request, client, source, sent)
        except FillFailed as exc:
            relay.error = exc
            assert request.transport is not None
            request.transport.abort()  # as blob_responses._cut does
            return response
        except ConnectionError:
            relay.client_gone = True
            return response
        finally:
            sock.close()
            relay.done.set()
        await response.write_eof()
        return response

    app.router.add_get("/blob", handler)
    await server.start_server()
    relay.url = str(server.make_url("/blob"))
    try:
        yield relay
    finally:
        bucket.release.set()
        await server.close()
        upstream.close()
        await upstream.wait_closed()


async def fetch(url: str) -> bytes | None:
    """The whole body, or None when the connection was cut before its end."""
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        try:
            return await resp.read()
        except aiohttp.ClientPayloadError:
            return None


async def test_a_whole_body_arrives_byte_identical() -> None:
    data = os.urandom(SIZE)
    async with relaying(Bucket(data, len(data)), silence=30.0) as relay:
        assert await fetch(relay.url) == data
        assert (relay.relayed, relay.error) == (SIZE - EARLY, None)


async def test_a_bucket_that_ends_early_cuts_the_client() -> None:
    data = os.urandom(SIZE)
    async with relaying(Bucket(data, SIZE // 2), silence=30.0) as relay:
        assert await fetch(relay.url) is None, "a client got a whole body from a cut one"
        assert relay.error is not None and "cut after" in str(relay.error)
        assert relay.relayed == SIZE // 2 - EARLY


async def test_a_silent_bucket_cuts_the_client_after_its_timeout() -> None:
    data = os.urandom(SIZE)
    async with relaying(Bucket(data, SIZE // 2, hold=True), silence=0.3) as relay:
        assert await fetch(relay.url) is None
        assert relay.error is not None and "silent" in str(relay.error)


async def test_a_client_that_goes_away_ends_the_relay() -> None:
    data = os.urandom(64 * 1024 * 1024)  # more than the sockets and the pipe hold
    async with relaying(Bucket(data, len(data)), silence=30.0) as relay:
        async with aiohttp.ClientSession() as session, session.get(relay.url) as resp:
            assert len(await resp.content.readexactly(1024 * 1024)) == 1024 * 1024
            resp.close()  # gone, with most of the body unread
        await relay.done.wait()
        assert relay.client_gone and relay.error is None
        assert relay.relayed < len(data) - EARLY
