"""Storms: eviction and purges running while clients pull. The promises hold while it runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.oci import sha256_digest
from fakes.ops import assert_consistent, metric_value, scrape
from support.poll import eventually

REPO = "library/storm"
KIB = 1024
BLOB = 256 * KIB
BLOBS = 40  # 10 MiB in all
MAX_SIZE = 3 * 1024 * KIB  # about 12 blobs
CLIENTS = 8
REQUESTS_PER_CLIENT = 30
TOKEN = "storm-admin-token-0123456789"


def blob_file_bytes(data: Path) -> int:
    """Bytes of stored blob files, read without SQLite (cheap enough to sample often)."""
    total = 0
    blobs = data / "blobs"
    for algorithm in os.scandir(blobs) if blobs.exists() else []:
        for prefix in os.scandir(algorithm.path):
            for entry in os.scandir(prefix.path):
                with contextlib.suppress(FileNotFoundError):  # evicted after the listing
                    total += entry.stat().st_size
    return total


async def client(
    session: aiohttp.ClientSession, mirror: TestServer, digests: list[str], seed: int
) -> list[str]:
    """Fetch random blobs; return what went wrong (status, short or wrong bodies)."""
    rng = random.Random(seed)
    problems = []
    for _ in range(REQUESTS_PER_CLIENT):
        digest = rng.choice(digests)
        async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
            try:
                body = await resp.read()
            except aiohttp.ClientPayloadError as exc:
                problems.append(f"{digest[:19]}: cut ({exc})")
                continue
            if resp.status != 200:
                problems.append(f"{digest[:19]}: {resp.status}")
            elif sha256_digest(body) != digest:
                problems.append(f"{digest[:19]}: wrong bytes")
    return problems


async def storm(
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    purge_every: float | None,
) -> tuple[TestServer, list[str], int]:
    digests = [hub.add_blob(REPO, hub.make_blob(BLOB, seed=100 + n)) for n in range(BLOBS)]
    mirror = await make_mirror(
        max_size=str(MAX_SIZE), low_water=0.8, flush_interval="1s", admin_token=TOKEN
    )
    data = tmp_path / "data"
    peak = 0
    done = asyncio.Event()

    async def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, blob_file_bytes(data))
            await asyncio.sleep(0.005)

    async def purge() -> None:
        assert purge_every is not None
        headers = {"Authorization": f"Bearer {TOKEN}"}
        while not done.is_set():
            async with session.delete(mirror.make_url("/admin/cache"), headers=headers) as resp:
                assert resp.status == 200, await resp.text()
            await asyncio.sleep(purge_every)

    background = [asyncio.create_task(sample())]
    if purge_every is not None:
        background.append(asyncio.create_task(purge()))
    results = await asyncio.wait_for(
        asyncio.gather(*(client(session, mirror, digests, seed) for seed in range(CLIENTS))), 60
    )
    done.set()
    await asyncio.gather(*background)
    return mirror, [problem for result in results for problem in result], peak


async def gauge_matches_disk(
    session: aiohttp.ClientSession, mirror: TestServer, data: Path
) -> None:
    state = assert_consistent(data)
    text = await scrape(session, mirror)
    assert metric_value(text, "mirror_storage_bytes") == state.file_bytes
    assert metric_value(text, "mirror_storage_blobs") == len(state.files)
    assert metric_value(text, "mirror_fill_failures_total", {"reason": "other"}) == 0
    assert metric_value(text, "mirror_clients_cut_total") == 0


async def test_eviction_storm_while_clients_pull(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mirror, problems, peak = await storm(hub, make_mirror, session, tmp_path, purge_every=None)
    assert problems == []
    # A new blob makes room before it lands; what cannot go is what clients are being sent
    # right now (at most one blob per client), so that is the slack over the bound.
    assert peak <= MAX_SIZE + CLIENTS * BLOB, f"peak {peak} bytes"
    data = tmp_path / "data"
    await eventually(lambda: blob_file_bytes(data) <= MAX_SIZE, what="back under max_size")
    await gauge_matches_disk(session, mirror, data)


async def test_purge_storm_while_clients_pull(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mirror, problems, _ = await storm(hub, make_mirror, session, tmp_path, purge_every=0.02)
    assert problems == []
    await gauge_matches_disk(session, mirror, tmp_path / "data")
