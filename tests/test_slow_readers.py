"""Slow readers of a running fill cost kilobytes each, not a megabyte (issue 8, item 9).

A fill's readers are sent from its temp file with sendfile (fill.BlobStream.send), so a client
that reads nothing holds no byte of the blob in the mirror's memory: the rest waits in the file,
and what the kernel already took sits in socket buffers, outside the process. This test holds a
real `mirror serve` process mid-fill with many clients that read nothing, and measures the
process's resident memory (VmRSS): 1.6 MiB per client with 1 MiB writes, about 290 KiB with
128 KiB writes, about 25 KiB (what any connection costs) with sendfile.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aiohttp
from fakes import FakeHub
from fakes.ops import metric_value, scrape
from support.mirror_process import MirrorProcess, MirrorProcesses
from support.poll import eventually

REPO = "library/slow"
KIB = 1024
MIB = 1024 * KIB
BLOB = 8 * MIB  # the hub sends the first half, then holds the rest behind its gate
CLIENTS = 200
PER_CLIENT_LIMIT = 128 * KIB
RECEIVE_BUFFER = 4 * KIB
# served_bytes unchanged over this many scrapes in a row: every client's send is blocked.
STILL_SCRAPES = 10


def resident_bytes(pid: int) -> int:
    """VmRSS of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * KIB
    raise AssertionError(f"no VmRSS for {pid}")


class SlowClient:
    def __init__(self, sock: socket.socket, body_bytes: int) -> None:
        self.sock = sock
        self.body_bytes = body_bytes  # body bytes read with the response head

    def has_body(self) -> bool:
        """Body bytes arrived: read with the head, or waiting in the socket (not read)."""
        try:
            return self.body_bytes > 0 or bool(self.sock.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return False


async def slow_client(proc: MirrorProcess, digest: str) -> SlowClient:
    """Ask for the blob, read the response head, then read nothing more (the socket stays
    open, with a small receive buffer, until the test closes it)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # before connect
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", proc.port))
    request = f"GET /v2/{REPO}/blobs/{digest} HTTP/1.1\r\nHost: {proc.host}\r\n\r\n"
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = await loop.sock_recv(sock, 512)
        assert data, f"closed before the response head: {head!r}"
        head += data
    assert head.startswith(b"HTTP/1.1 200 "), head[:200]
    return SlowClient(sock, len(head.partition(b"\r\n\r\n")[2]))


async def served_from_fills(session: aiohttp.ClientSession, proc: MirrorProcess) -> float:
    text = await scrape(session, proc.url)
    assert metric_value(text, "mirror_fills_inflight") == 1  # the one fill, still running
    return metric_value(text, "mirror_served_bytes_total", {"source": "fill"}) or 0.0


async def test_a_slow_reader_of_a_running_fill_costs_little_memory(
    hub: FakeHub,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    mirror_processes: MirrorProcesses,
) -> None:
    digest = hub.add_blob(REPO, hub.make_blob(BLOB, seed=7))
    gate = hub.faults.blob_gate = asyncio.Event()
    config = {
        "storage": {"path": str(tmp_path / "data")},
        "upstreams": [{"name": "docker.io", "url": hub.url}],
    }
    proc = mirror_processes(config=config)
    # Warm the process up (a request, a scrape) so the baseline holds what any request costs.
    async with session.get(f"{proc.url}/v2/") as resp:
        assert resp.status == 200
    await scrape(session, proc.url)
    before = resident_bytes(proc.pid)
    peak = before
    clients: list[SlowClient] = []
    try:
        clients = list(await asyncio.gather(*(slow_client(proc, digest) for _ in range(CLIENTS))))
        # Every client now follows the one fill; the mirror keeps sending until each client's
        # socket is full and its send waits. Wait for that: every client has body bytes, and
        # the bytes the mirror counts as handed over stop moving.
        history: list[float] = []

        async def settled() -> bool:
            nonlocal peak
            history.append(await served_from_fills(session, proc))
            peak = max(peak, resident_bytes(proc.pid))
            recent = history[-STILL_SCRAPES:]
            still = len(recent) == STILL_SCRAPES and len(set(recent)) == 1
            return still and all(client.has_body() for client in clients)

        await eventually(settled, within=60, interval=0.05, what="every slow client blocked")
        peak = max(peak, resident_bytes(proc.pid))
    finally:
        gate.set()  # the fill may finish; the clients go
        for client in clients:
            client.sock.close()
    per_client = (peak - before) / CLIENTS
    print(
        f"RSS {before / MIB:.1f} MiB before, {peak / MIB:.1f} MiB with {CLIENTS} slow clients: "
        f"{per_client / KIB:.0f} KiB each; {history[-1] / MIB:.1f} MiB handed to them"
    )
    assert per_client < PER_CLIENT_LIMIT, f"{per_client / KIB:.0f} KiB per slow client"
    async with session.get(f"{proc.url}/healthz") as resp:
        assert resp.status == 200
