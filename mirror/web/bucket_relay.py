"""A bucket hit's body moved by the kernel: splice(2) from the bucket's socket into a pipe and
from the pipe to the client's socket, so no byte of the blob passes through Python.

Streamed through aiohttp, every byte is copied into Python and joined into 1 MiB pieces before
it is sent: on the bench machine that reached 0.6-0.7x of a direct read of the bucket (the
mirror, the bucket and curl sharing 2 cores). Linux only, and only with both connections plain
TCP (with TLS the bytes on a socket are not the body); otherwise send_bucket streams.

Exactly `length` bytes are sent: the bucket's socket ending sooner, or silent for longer than
the body's timeout, raises FillFailed (the caller cuts the client, who holds a short body).
The sockets are used through duplicates of their descriptors: the event loop refuses to watch
a transport's own descriptor, and a client that goes away closes the transport's.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import socket
from collections.abc import Callable

from aiohttp import web

from mirror.errors import FillFailed
from mirror.stores.s3_body import BodySocket

AVAILABLE = hasattr(os, "splice")
PIPE_SIZE = 1024 * 1024  # asked for; the kernel may grant less (pipe-max-size)
_FLAGS = getattr(os, "SPLICE_F_MOVE", 0) | getattr(os, "SPLICE_F_NONBLOCK", 0)


def client_socket(request: web.Request) -> int | None:
    """The client's socket descriptor when the kernel can write the body to it."""
    transport = request.transport
    if not AVAILABLE or transport is None or transport.is_closing():
        return None
    sock = transport.get_extra_info("socket")
    if transport.get_extra_info("ssl_object") is not None or sock is None:
        return None
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or sock.type != socket.SOCK_STREAM:
        return None
    return int(sock.fileno())


async def relay(
    request: web.Request, client: int, source: BodySocket, sent: Callable[[int], None]
) -> None:
    """Send the body's bytes still on the bucket's socket (`source.early` went out already,
    through the response). ConnectionError when the client goes away."""
    transport = request.transport
    assert transport is not None
    loop = asyncio.get_running_loop()
    remaining = source.length - len(source.early)
    opened: list[int] = []
    try:
        try:
            bucket, to_client = _own(opened, os.dup(source.fd)), _own(opened, os.dup(client))
            out, into = (_own(opened, fd) for fd in os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC))
        except OSError as exc:  # out of descriptors: the client is cut, and asks again
            raise FillFailed(f"no descriptors for the relay: {exc}") from None
        with contextlib.suppress(OSError):
            fcntl.fcntl(into, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        capacity = fcntl.fcntl(into, fcntl.F_GETPIPE_SZ)
        # The head and the early bytes go first: wait until aiohttp's buffer is empty.
        while transport.get_write_buffer_size():
            await _ready(loop, None, to_client, None)
        piped = 0
        while remaining or piped:
            moved = False
            if remaining and piped < capacity:
                count = _from_bucket(bucket, into, min(remaining, capacity - piped))
                if count == 0:
                    got = source.length - remaining
                    raise FillFailed(f"bucket body cut after {got} of {source.length} bytes")
                if count > 0:
                    remaining -= count
                    piped += count
                    moved = True
            if piped:
                count = _to_client(out, to_client, piped)
                if count > 0:
                    piped -= count
                    sent(count)
                    moved = True
            if not moved:
                # Only the bucket keeps us waiting: its silence is bounded; a slow client is not
                # (as with the streamed path).
                watch_bucket = bucket if remaining and piped < capacity else None
                timeout = source.timeout if not piped else None
                await _ready(loop, watch_bucket, to_client if piped else None, timeout)
    except TimeoutError:
        got = source.length - remaining
        raise FillFailed(f"bucket silent for {source.timeout:g} s after {got} bytes") from None
    finally:
        for fd in opened:
            os.close(fd)


def _own(opened: list[int], fd: int) -> int:
    opened.append(fd)
    return fd


def _from_bucket(bucket: int, pipe: int, count: int) -> int:
    """Bytes moved into the pipe; 0 at the end of the bucket's stream; -1: none yet."""
    try:
        return os.splice(bucket, pipe, count, flags=_FLAGS)
    except BlockingIOError:
        return -1
    except OSError as exc:  # a reset by the bucket: a cut body
        raise FillFailed(f"reading the bucket's body failed: {exc}") from None


def _to_client(pipe: int, client: int, count: int) -> int:
    """Bytes moved to the client; -1: it takes none now. ConnectionError: it went away."""
    try:
        return os.splice(pipe, client, count, flags=_FLAGS)
    except BlockingIOError:
        return -1
    except OSError as exc:
        raise ConnectionResetError(f"the client went away: {exc}") from None


async def _ready(
    loop: asyncio.AbstractEventLoop, read: int | None, write: int | None, within: float | None
) -> None:
    """Until `read` is readable or `write` writable (descriptors of our own)."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if read is not None:
        loop.add_reader(read, wake)
    if write is not None:
        loop.add_writer(write, wake)
    try:
        async with asyncio.timeout(within):
            await ready
    finally:
        if read is not None:
            loop.remove_reader(read)
        if write is not None:
            loop.remove_writer(write)
