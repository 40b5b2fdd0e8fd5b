"""Storms: eviction and purges running while clients pull. The promises hold while it runs:
no failed fill, no cut client, the disk (stored files and running fills' temp files) at most
max_size plus one blob at every sample, and the usage gauge equal to the disk afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from pathlib import Path

import aiohttp
import pytest
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
            total += folder_bytes(Path(prefix.path))
    return total


def folder_bytes(folder: Path) -> int:
    total = 0
    for entry in os.scandir(folder) if folder.exists() else []:
        with contextlib.suppress(FileNotFoundError):  # evicted or renamed after the listing
            total += entry.stat().st_size
    return total


def disk_bytes(data: Path) -> int:
    """What blobs take on disk: stored files, and the temp files of running fills."""
    return blob_file_bytes(data) + folder_bytes(data / "tmp")


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
            peak = max(peak, disk_bytes(data))
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
    # A fill reserves its announced size and makes room when it starts, so stored blobs and
    # running fills together stay under max_size; the one blob of slack is a blob chosen for
    # eviction that a reader took up meanwhile (its file goes when the reader lets go).
    # Before reservations (room made when a fill landed): max_size + 7 to 10 blobs.
    assert peak <= MAX_SIZE + BLOB, (
        f"peak {peak} bytes: max_size + {(peak - MAX_SIZE) / BLOB} blobs"
    )
    data = tmp_path / "data"
    await eventually(lambda: blob_file_bytes(data) <= MAX_SIZE, what="back under max_size")
    await gauge_matches_disk(session, mirror, data)


async def test_purge_storm_while_clients_pull(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mirror, problems, peak = await storm(hub, make_mirror, session, tmp_path, purge_every=0.02)
    assert problems == []
    assert peak <= MAX_SIZE + BLOB, (
        f"peak {peak} bytes: max_size + {(peak - MAX_SIZE) / BLOB} blobs"
    )
    await gauge_matches_disk(session, mirror, tmp_path / "data")


# -- room is made when a fill starts, and given back when it fails ----------------------------


async def evicted(session: aiohttp.ClientSession, mirror: TestServer) -> float:
    return metric_value(await scrape(session, mirror), "mirror_evicted_blobs_total") or 0.0


async def fetch(session: aiohttp.ClientSession, mirror: TestServer, digest: str) -> bytes:
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
        assert resp.status == 200, resp.status
        return await resp.read()


async def test_a_fill_makes_room_when_it_starts(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """The store is full; a cold blob's fill evicts as soon as the upstream announced its
    size, while the hub still holds back half of the body."""
    stored = [hub.add_blob(REPO, hub.make_blob(BLOB, seed=200 + n)) for n in range(4)]
    cold = hub.add_blob(REPO, hub.make_blob(BLOB, seed=210))
    mirror = await make_mirror(max_size=str(4 * BLOB), low_water=1.0)
    for digest in stored:
        await fetch(session, mirror, digest)
    assert await evicted(session, mirror) == 0
    gate = hub.faults.blob_gate = asyncio.Event()
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{cold}")) as resp:
        assert resp.status == 200
        first = await resp.content.readexactly(1)  # the fill is past its start: room made
        assert await evicted(session, mirror) == 1
        assert disk_bytes(tmp_path / "data") <= 4 * BLOB
        gate.set()
        assert sha256_digest(first + await resp.content.read()) == cold
    await gauge_matches_disk(session, mirror, tmp_path / "data")


async def test_a_failed_fill_gives_its_room_back(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A fill cut by the upstream releases its reservation: the next blob that fits in the
    bound evicts nothing."""
    stored = [hub.add_blob(REPO, hub.make_blob(BLOB, seed=300 + n)) for n in range(3)]
    failing, fits = (hub.add_blob(REPO, hub.make_blob(BLOB, seed=310 + n)) for n in range(2))
    mirror = await make_mirror(max_size=str(4 * BLOB), low_water=1.0)
    for digest in stored:
        await fetch(session, mirror, digest)
    hub.faults.blob_reset_after = BLOB // 2
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{failing}")) as resp:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    hub.faults.blob_reset_after = None
    assert sha256_digest(await fetch(session, mirror, fits)) == fits
    assert await evicted(session, mirror) == 0  # a leaked reservation would have evicted one
    state = assert_consistent(tmp_path / "data")
    assert len(state.files) == 4
    text = await scrape(session, mirror)
    assert metric_value(text, "mirror_storage_bytes") == state.file_bytes == 4 * BLOB
