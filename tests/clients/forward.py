"""A TCP forwarder between two network namespaces, run as its own process.

    python forward.py [--tally FILE] NETNS_PATH \
        [LISTEN_ADDRESS:]LISTEN_PORT:TARGET_HOST:TARGET_PORT [...]

It listens on LISTEN_ADDRESS:LISTEN_PORT (127.0.0.1 unless given) *inside* the namespace at
NETNS_PATH (a client sandbox that has only `lo`) and connects to TARGET_HOST:TARGET_PORT in its
own (the host's) namespace. A socket keeps the namespace it was created in, so one process can
hold both ends: it enters the sandbox only long enough to create the listening sockets. Prints
"ready" once every socket listens.

With `--tally FILE`, FILE holds {"connections": N, "up": BYTES, "down": BYTES} (up: from the
sandbox to the target), rewritten *before* each chunk is passed on: once a client in the sandbox
has its bytes, the file already counts them, with no wait for an idle connection to close.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable

CLONE_NEWNET = 0x40000000
BUFFER = 256 * 1024


def setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def listen_in(netns_path: str, addresses: list[tuple[str, int]]) -> list[socket.socket]:
    """Listening sockets on (address, port) inside the namespace at netns_path."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    try:
        setns(target)
        try:
            return [socket.create_server(address, backlog=128) for address in addresses]
        finally:
            setns(home)
    finally:
        os.close(home)
        os.close(target)


class Tally:
    """Connections and bytes each way through the forwarder; written to `path` if given."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.counts = {"connections": 0, "up": 0, "down": 0}

    def add(self, key: str, amount: int) -> None:
        self.counts[key] += amount
        if self.path is not None:
            # Replaced through a rename: a reader sees the old counts or the new, never half.
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as file:
                json.dump(self.counts, file)
            os.replace(tmp, self.path)


Count = Callable[[int], None]


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, count: Count) -> None:
    try:
        while data := await reader.read(BUFFER):
            count(len(data))  # before passing it on: see Tally
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def handler(host: str, port: int, tally: Tally) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        tally.add("connections", 1)
        up = functools.partial(tally.add, "up")
        down = functools.partial(tally.add, "down")
        try:
            await asyncio.gather(pipe(reader, up_writer, up), pipe(up_reader, writer, down))
        finally:
            for w in (writer, up_writer):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()

    return handle


async def main(netns_path: str, specs: list[str], tally: Tally) -> None:
    routes: list[tuple[tuple[str, int], str, int]] = []
    for spec in specs:
        *listen, host, port = spec.split(":")
        address = listen[0] if len(listen) == 2 else "127.0.0.1"
        routes.append(((address, int(listen[-1])), host, int(port)))
    sockets = listen_in(netns_path, [r[0] for r in routes])
    servers = [
        await asyncio.start_server(handler(host, port, tally), sock=sock)
        for sock, (_, host, port) in zip(sockets, routes, strict=True)
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    for server in servers:
        server.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    tally_path = None
    if args[:1] == ["--tally"]:
        tally_path, args = args[1], args[2:]
    asyncio.run(main(args[0], args[1:], Tally(tally_path)))
