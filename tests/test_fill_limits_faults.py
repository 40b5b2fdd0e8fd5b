"""Fill limits: clients that hang up or whose fills fail free their bound; HEAD answers as GET."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from fakes import FakeHub
from fakes.client import start_mirror as start
from support.poll import eventually

from mirror.web.appkeys import MIRROR

REPO = "library/alpine"
MIB = 1024 * 1024


async def test_clients_that_hang_up_or_whose_fills_fail_free_their_bound(
    hub: FakeHub, aiohttp_server: Any, mirror_config: dict[str, Any], session: aiohttp.ClientSession
) -> None:
    mirror = await start(
        aiohttp_server,
        mirror_config,
        cache={"max_fills_per_client": 2, "max_concurrent_fills": 3},
    )
    limits = mirror.app[MIRROR].blobs._limits
    blobs = [hub.make_blob(2 * MIB, seed=400 + n) for n in range(12)]
    digests = [hub.add_blob(REPO, b) for b in blobs]
    hub.faults.blob_gate = gate = asyncio.Event()

    async def hang_up(digest: str) -> int:
        async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
            return resp.status  # leaves before the body

    statuses = [await hang_up(d) for d in digests[:6]]
    assert statuses.count(200) == 2 and statuses.count(429) == 4, statuses
    hub.faults.blob_reset_after = 10  # the running fills now fail
    gate.set()
    await eventually(lambda: _idle(mirror), what="fills over")
    assert dict(limits._by_client) == {}
    hub.faults.blob_reset_after = None
    hub.faults.blob_gate = None
    for d, b in zip(digests[6:8], blobs[6:8], strict=True):
        async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{d}")) as resp:
            assert resp.status == 200 and await resp.read() == b


async def _idle(mirror: Any) -> bool:
    return not mirror.app[MIRROR].blobs._fills


async def test_head_and_get_agree_on_an_unreferenced_blob(
    hub: FakeHub, aiohttp_server: Any, mirror_config: dict[str, Any], session: aiohttp.ClientSession
) -> None:
    """With fetch_unreferenced_blobs = false, GET of an unreferenced blob is 404 BLOB_UNKNOWN;
    HEAD of the same blob says it exists (200 with its size) and records a link for it."""
    mirror = await start(aiohttp_server, mirror_config, cache={"fetch_unreferenced_blobs": False})
    stray = hub.add_blob(REPO, hub.make_blob(MIB, seed=430))
    url = mirror.make_url(f"/v2/{REPO}/blobs/{stray}")
    async with session.get(url) as resp:
        get_status = resp.status
    async with session.head(url) as resp:
        head_status = resp.status
    assert head_status == get_status, (head_status, get_status)
