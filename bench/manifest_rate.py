"""Manifest cache-hit rate: requests per second for `HEAD`/`GET` of a cached tag.

This is the request a fleet of nodes sends at every pull (dockerd and containerd resolve the tag
with a HEAD), so its cost bounds how many pulls a mirror absorbs. Starts a fake upstream
(tests/fakes) and the mirror as a real subprocess, resolves the tag once, then sends --requests
requests over --connections keep-alive connections from this process:

    .venv/bin/python bench/manifest_rate.py
    .venv/bin/python bench/manifest_rate.py --method GET --connections 64

Everything listens on 127.0.0.1; the run is bounded by --requests.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from fakes import FakeHub  # noqa: E402
from support.mirror_process import MirrorProcess, process_config  # noqa: E402

ACCEPT = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


async def worker(
    session: aiohttp.ClientSession, method: str, url: str, count: int, latencies: list[float]
) -> None:
    for _ in range(count):
        started = time.perf_counter()
        async with session.request(method, url, headers={"Accept": ACCEPT}) as response:
            await response.read()
            if response.status != 200:
                raise RuntimeError(f"{method} {url} answered {response.status}")
        latencies.append(time.perf_counter() - started)


async def run(args: argparse.Namespace) -> None:
    async with FakeHub() as hub:
        image = hub.add_image("library/bench", "1.0", [hub.make_blob(1000, seed=1)])
        with tempfile.TemporaryDirectory() as tmp:
            mirror = MirrorProcess(Path(tmp), process_config(hub.url, Path(tmp) / "data"))
            mirror.start()
            try:
                url = f"{mirror.url}/v2/library/bench/manifests/1.0"
                connector = aiohttp.TCPConnector(limit=args.connections)
                async with aiohttp.ClientSession(connector=connector) as session:
                    await worker(session, "GET", url, 1, [])  # the one miss
                    hub.reset_counts()
                    latencies: list[float] = []
                    per_worker = args.requests // args.connections
                    started = time.perf_counter()
                    await asyncio.gather(
                        *(
                            worker(session, args.method, url, per_worker, latencies)
                            for _ in range(args.connections)
                        )
                    )
                    elapsed = time.perf_counter() - started
            finally:
                mirror.stop()
        upstream = hub.count()
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(f"{args.method} of a cached tag ({image.media_type}), {args.connections} connections")
    print(f"{len(latencies)} requests in {elapsed:.2f} s = {len(latencies) / elapsed:.0f} req/s")
    print(f"latency p50 {p50:.2f} ms, p99 {p99:.2f} ms; upstream requests meanwhile: {upstream}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["HEAD", "GET"], default="HEAD")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=5000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
