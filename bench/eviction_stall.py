"""Eviction stall: how long the event loop stops answering while many small blobs are evicted.

Fills a data folder with --blobs small blobs (rows and files written directly), sets max_size so
that one more 2 MiB blob crosses it, then fetches that blob through the mirror (in this process)
while pinging /healthz every 5 ms. Prints the time of the fetch (which evicts nearly everything
to make room) and the longest gap between two /healthz answers:

    .venv/bin/python bench/eviction_stall.py --blobs 20000

Everything listens on 127.0.0.1; the run is bounded by --blobs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from fakes import FakeHub  # noqa: E402

from mirror.config import parse_config  # noqa: E402
from mirror.web.app import create_app  # noqa: E402

SMALL = 1024
BIG = 2 * 1024 * 1024


def populate(data: Path, count: int) -> None:
    """Rows and files of `count` distinct 1 KiB blobs, oldest first."""
    rows = []
    for n in range(count):
        body = n.to_bytes(4, "big") * (SMALL // 4)
        hex_digest = hashlib.sha256(body).hexdigest()
        path = data / "blobs" / "sha256" / hex_digest[:2] / hex_digest
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
        rows.append((f"sha256:{hex_digest}", SMALL, float(n), float(n)))
    db = sqlite3.connect(data / "mirror.db")
    db.executemany("INSERT INTO blobs VALUES (?, ?, ?, ?)", rows)
    db.commit()
    db.close()


async def run(count: int, data: Path) -> tuple[float, float]:
    async with FakeHub() as hub:
        big = hub.make_blob(BIG, seed=1)
        digest = hub.add_blob("library/bench", big)
        config = parse_config(
            {
                "storage": {"path": str(data), "max_size": str(count * SMALL + BIG // 2)},
                "upstreams": [{"name": "docker.io", "url": hub.url}],
            }
        )
        first = TestServer(create_app(config))
        await first.start_server()  # creates the database
        await first.close()
        populate(data, count)
        server = TestServer(create_app(config))
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                worst, done = 0.0, asyncio.Event()

                async def ping() -> None:
                    nonlocal worst
                    last = time.perf_counter()
                    while not done.is_set():
                        async with session.get(server.make_url("/healthz")) as resp:
                            await resp.read()
                        now = time.perf_counter()
                        worst, last = max(worst, now - last), now
                        await asyncio.sleep(0.005)

                pinger = asyncio.create_task(ping())
                started = time.perf_counter()
                async with session.get(server.make_url(f"/v2/library/bench/blobs/{digest}")) as r:
                    assert await r.read() == big
                took = time.perf_counter() - started
                await asyncio.sleep(0.2)
                done.set()
                await pinger
        finally:
            await server.close()
    return took, worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blobs", type=int, default=20_000)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="mirror-evict-"))
    try:
        took, worst = asyncio.run(run(args.blobs, data / "data"))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print(
        f"fetch that evicted {args.blobs} blobs: {took:.2f} s; longest /healthz gap: "
        f"{worst * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
