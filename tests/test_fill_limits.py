"""Bounds on what clients can make the mirror download: a global and a per-client bound on
running fills (429 TOOMANYREQUESTS with Retry-After; joining a running fill is free), and no
download of a blob that no cached manifest references when that is switched off."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import start_mirror as start
from support.poll import eventually

from mirror.web.appkeys import MIRROR

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
REPO = "library/alpine"
MIB = 1024 * 1024


def refused(mirror: TestServer, reason: str) -> float:
    sample = mirror.app[MIRROR].metrics.registry.get_sample_value
    return sample("mirror_fills_refused_total", {"reason": reason}) or 0.0


async def test_over_the_global_bound_a_new_download_is_refused_but_joining_one_is_not(
    hub: FakeHub,
    aiohttp_server: ServerFactory,
    mirror_config: dict[str, Any],
    session: aiohttp.ClientSession,
) -> None:
    mirror = await start(aiohttp_server, mirror_config, cache={"max_concurrent_fills": 2})
    blobs = [hub.make_blob(MIB, seed=300 + n) for n in range(3)]
    digests = [hub.add_blob(REPO, data) for data in blobs]
    hub.faults.blob_gate = gate = asyncio.Event()  # the upstream holds each blob's second half

    def url(digest: str) -> str:
        return str(mirror.make_url(f"/v2/{REPO}/blobs/{digest}"))

    async with AsyncExitStack() as held:
        running = [await held.enter_async_context(session.get(url(d))) for d in digests[:2]]
        assert [resp.status for resp in running] == [200, 200]

        async with session.get(url(digests[2])) as over:
            assert over.status == 429
            assert over.headers["Retry-After"] == "2"
            body = await over.json()
            assert body["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert refused(mirror, "busy") == 1
        # A third client of a running download is one more reader, not one more download.
        joined = await held.enter_async_context(session.get(url(digests[0])))
        assert joined.status == 200

        gate.set()
        assert [await resp.read() for resp in (*running, joined)] == [*blobs[:2], blobs[0]]
    hub.faults.blob_gate = None

    async def third() -> bool:
        async with session.get(url(digests[2])) as resp:
            return resp.status == 200 and await resp.read() == blobs[2]

    await eventually(third, what="the third blob, once the first two landed")
    assert refused(mirror, "busy") == 1


async def test_each_client_address_has_its_own_bound(
    hub: FakeHub,
    aiohttp_server: ServerFactory,
    mirror_config: dict[str, Any],
    session: aiohttp.ClientSession,
) -> None:
    mirror = await start(
        aiohttp_server,
        mirror_config,
        cache={"max_fills_per_client": 1},
        server={"trusted_proxies": ["127.0.0.1/32"]},  # clients told apart by X-Forwarded-For
    )
    blobs = [hub.make_blob(MIB, seed=310 + n) for n in range(2)]
    digests = [hub.add_blob(REPO, data) for data in blobs]
    hub.faults.blob_gate = gate = asyncio.Event()

    def get(digest: str, client: str) -> aiohttp.client._RequestContextManager:
        return session.get(
            mirror.make_url(f"/v2/{REPO}/blobs/{digest}"), headers={"X-Forwarded-For": client}
        )

    async with get(digests[0], "10.0.0.1") as first:
        assert first.status == 200
        async with get(digests[1], "10.0.0.1") as second:
            assert second.status == 429
            assert second.headers["Retry-After"]
        assert refused(mirror, "client") == 1
        async with get(digests[1], "10.0.0.2") as other:
            assert other.status == 200
            gate.set()
            assert await other.read() == blobs[1]
        assert await first.read() == blobs[0]
    hub.faults.blob_gate = None

    async def again() -> bool:  # the first client's download ended: its bound is free again
        async with get(hub.add_blob(REPO, hub.make_blob(1000, seed=320)), "10.0.0.1") as resp:
            return resp.status == 200

    await eventually(again, what="the first client's next download")


async def test_unreferenced_blobs_are_not_fetched_when_switched_off(
    hub: FakeHub,
    aiohttp_server: ServerFactory,
    mirror_config: dict[str, Any],
    session: aiohttp.ClientSession,
) -> None:
    mirror = await start(aiohttp_server, mirror_config, cache={"fetch_unreferenced_blobs": False})
    image = hub.add_image(REPO, "3.19", [b"layer one", b"layer two"])
    stray = hub.add_blob(REPO, hub.make_blob(MIB, seed=330))

    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{stray}")) as resp:
        assert resp.status == 404
        assert (await resp.json())["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert hub.count(method="GET", path_contains="/blobs/") == 0, "fetched anyway"
    assert refused(mirror, "unreferenced") == 1

    # A layer of a manifest pulled through the mirror is fetched as always.
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200
    for digest in image.layer_digests:
        async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
            assert resp.status == 200
    assert refused(mirror, "unreferenced") == 1


async def test_fifty_misses_from_one_client_ten_fill_the_rest_get_429_at_once(
    hub: FakeHub,
    aiohttp_server: ServerFactory,
    mirror_config: dict[str, Any],
    session: aiohttp.ClientSession,
) -> None:
    """One client asks for 50 distinct uncached blobs at once with max_fills_per_client = 10:
    ten downloads start (held by the upstream), the other 40 are refused at once, while the
    ten are still held; released, the ten complete byte for byte, and so do the 40, retried."""
    bound, clients = 10, 50
    mirror = await start(aiohttp_server, mirror_config, cache={"max_fills_per_client": bound})
    blobs = [hub.make_blob(256 * 1024, seed=400 + n) for n in range(clients)]
    digests = [hub.add_blob(REPO, data) for data in blobs]
    hub.faults.blob_gate = gate = asyncio.Event()

    def url(digest: str) -> str:
        return str(mirror.make_url(f"/v2/{REPO}/blobs/{digest}"))

    async with AsyncExitStack() as held:
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def ask(digest: str) -> tuple[aiohttp.ClientResponse, float]:
            resp = await held.enter_async_context(session.get(url(digest)))
            return resp, loop.time() - started

        answers = await asyncio.gather(*(ask(d) for d in digests))
        statuses = [resp.status for resp, _ in answers]
        assert sorted(statuses) == [200] * bound + [429] * (clients - bound), statuses
        refused_within = max(after for resp, after in answers if resp.status == 429)
        assert refused_within < 5.0, f"the excess waited {refused_within:.1f}s for its 429"
        for resp, _ in answers:
            if resp.status == 429:
                assert resp.headers["Retry-After"]
                assert (await resp.json())["errors"][0]["code"] == "TOOMANYREQUESTS"
        assert refused(mirror, "client") == clients - bound
        assert not gate.is_set()  # the ten were held all along: the 429s did not wait for them
        gate.set()
        for (resp, _), data in zip(answers, blobs, strict=True):
            if resp.status == 200:
                assert await resp.read() == data
    print(f"\n{clients - bound} of {clients} refused with 429 within {refused_within:.2f}s")
    hub.faults.blob_gate = None

    # Retried, each at its own pace (Retry-After shortened), the refused ones complete too.
    retried = [
        (d, b)
        for (resp, _), d, b in zip(answers, digests, blobs, strict=True)
        if resp.status == 429
    ]

    async def fetch(digest: str) -> bytes:
        while True:
            async with session.get(url(digest)) as resp:
                if resp.status == 200:
                    return await resp.read()
                assert resp.status == 429, resp.status
            await asyncio.sleep(0.05)

    assert await asyncio.gather(*(fetch(d) for d, _ in retried)) == [b for _, b in retried]
