"""Every manifest and blob answer says where it came from: X-Cache hit, miss or stale."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub


async def x_cache(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as response:
        assert response.status == 200
        await response.read()
        return response.headers["X-Cache"]


async def test_manifest_answers_say_miss_then_hit_then_stale(
    hub: FakeHub, mirror: TestServer, clock: FakeClock, session: aiohttp.ClientSession
) -> None:
    hub.add_image("library/alpine", "3.19", [hub.make_blob(1000, seed=1)])
    url = str(mirror.make_url("/v2/alpine/manifests/3.19"))
    assert await x_cache(session, url) == "miss"
    assert await x_cache(session, url) == "hit"
    clock.advance(3600)  # past the tag TTL, with the upstream failing
    hub.faults.registry_status = 503
    assert await x_cache(session, url) == "stale"


async def test_blob_answers_say_miss_then_hit(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    digest = hub.add_blob("library/alpine", hub.make_blob(100_000, seed=2))
    url = str(mirror.make_url(f"/v2/alpine/blobs/{digest}"))
    assert await x_cache(session, url) == "miss"
    assert await x_cache(session, url) == "hit"
