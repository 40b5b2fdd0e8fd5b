"""Blobs through the mirror: one upstream fill per digest, verified, shared, Range-capable."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import oci_error_code, read_or_none, wait_until
from fakes.oci import sha256_digest

REPO = "library/alpine"
MIB = 1024 * 1024


def blob_url(mirror: TestServer, digest: str, repo: str = REPO) -> str:
    return str(mirror.make_url(f"/v2/{repo}/blobs/{digest}"))


def cdn_gets(hub: FakeHub) -> int:
    return hub.count(server="cdn", method="GET")


async def get(session: aiohttp.ClientSession, url: str) -> bytes | None:
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        return await read_or_none(resp)


async def test_cold_blob_then_hit_without_upstream(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(3 * MIB + 17, seed=1)
    digest = hub.add_blob(REPO, data)
    async with session.get(blob_url(mirror, digest)) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["Content-Length"] == str(len(data))
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert await resp.read() == data
    assert cdn_gets(hub) == 1
    hub.reset_counts()
    async with session.get(blob_url(mirror, digest)) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["Content-Length"] == str(len(data))
        assert await resp.read() == data
    async with session.head(blob_url(mirror, digest)) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(data))
    assert hub.count() == 0


async def test_head_of_a_cold_blob(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(10_000, seed=2)
    digest = hub.add_blob(REPO, data)
    async with session.head(blob_url(mirror, digest)) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["Content-Length"] == str(len(data))
        assert await resp.read() == b""


async def test_image_layers_via_short_name(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    layers = [hub.make_blob(50_000 * (i + 1), seed=i) for i in range(3)]
    image = hub.add_image(REPO, "3.19", layers)
    async with session.get(mirror.make_url("/v2/alpine/manifests/3.19")) as resp:
        assert resp.status == 200
    for digest, layer in zip(image.layer_digests, layers, strict=True):
        assert await get(session, blob_url(mirror, digest, "alpine")) == layer
    assert await get(session, blob_url(mirror, image.config_digest, "alpine")) is not None
    assert cdn_gets(hub) == 4


async def test_concurrent_gets_share_one_fill(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(2 * MIB, seed=3)
    digest = hub.add_blob(REPO, data)
    # Hold the upstream half-way so the 20 requests overlap with the fill.
    hub.faults.blob_gate = gate = asyncio.Event()
    tasks = [asyncio.create_task(get(session, blob_url(mirror, digest))) for _ in range(20)]
    await wait_until(lambda: cdn_gets(hub) >= 1)
    await asyncio.sleep(0.2)  # let the other requests reach the mirror; not needed to pass
    gate.set()
    bodies = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert all(body == data for body in bodies)
    assert cdn_gets(hub) == 1


async def test_client_disconnect_does_not_stop_the_fill(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(2 * MIB, seed=4)
    digest = hub.add_blob(REPO, data)
    hub.faults.blob_gate = gate = asyncio.Event()
    resp = await session.get(blob_url(mirror, digest))
    assert resp.status == 200
    await resp.content.readexactly(1000)
    resp.close()  # the client goes away mid-blob
    await asyncio.sleep(0.2)  # give the mirror time to notice; not needed to pass
    gate.set()
    # The upstream body is delivered in full: the fill kept reading.
    await wait_until(lambda: hub.records(server="cdn")[0].status is not None)
    assert hub.records(server="cdn")[0].status == 200, "the fill stopped with its client"
    assert await asyncio.wait_for(get(session, blob_url(mirror, digest)), 10) == data
    assert cdn_gets(hub) == 1


async def test_wrong_bytes_are_not_stored_and_cut_the_client(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(MIB, seed=5)
    digest = hub.add_blob(REPO, data)
    hub.faults.blob_wrong_bytes = True
    async with session.get(blob_url(mirror, digest)) as resp:
        body = await read_or_none(resp) if resp.status == 200 else None
    assert body is None or len(body) < len(data)
    hub.faults.blob_wrong_bytes = False
    assert await get(session, blob_url(mirror, digest)) == data
    assert cdn_gets(hub) == 2


async def test_truncated_upstream_body_is_not_stored(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(MIB, seed=6)
    digest = hub.add_blob(REPO, data)
    hub.faults.blob_reset_after = 300_000
    async with session.get(blob_url(mirror, digest)) as resp:
        body = await read_or_none(resp) if resp.status == 200 else None
    assert body is None or len(body) < len(data)
    hub.faults.blob_reset_after = None
    assert await get(session, blob_url(mirror, digest)) == data
    assert cdn_gets(hub) == 2


async def test_slow_upstream_is_served_completely(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(640 * 1024, seed=7)
    digest = hub.add_blob(REPO, data)
    hub.faults.blob_chunk_delay = 0.02
    assert await get(session, blob_url(mirror, digest)) == data


async def test_blob_served_by_the_registry_itself(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    hub.redirect_blobs = False
    data = hub.make_blob(100_000, seed=8)
    digest = hub.add_blob(REPO, data)
    assert await get(session, blob_url(mirror, digest)) == data
    assert hub.count(server="cdn") == 0
    assert hub.count(server="registry", method="GET", path_contains="/blobs/", status=200) == 1


async def test_range_on_a_hit(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(100_000, seed=9)
    digest = hub.add_blob(REPO, data)
    url = blob_url(mirror, digest)
    assert await get(session, url) == data
    hub.reset_counts()
    cases = {"bytes=10-99": (10, 100), "bytes=-100": (len(data) - 100, len(data))}
    cases["bytes=99000-"] = (99_000, len(data))
    for header, (start, end) in cases.items():
        async with session.get(url, headers={"Range": header}) as resp:
            assert resp.status == 206, header
            assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(data)}"
            assert await resp.read() == data[start:end]
    async with session.get(url, headers={"Range": f"bytes={len(data)}-"}) as resp:
        assert resp.status == 416
    assert hub.count() == 0


async def test_range_during_a_fill(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(2 * MIB, seed=10)
    digest = hub.add_blob(REPO, data)
    url = blob_url(mirror, digest)
    hub.faults.blob_gate = gate = asyncio.Event()
    full = asyncio.create_task(get(session, url))
    await wait_until(lambda: cdn_gets(hub) == 1)
    # Inside the first half, which the CDN has sent while it waits at the gate: all but the
    # range's last byte arrive at once, the last one once the whole blob is verified.
    async with session.get(url, headers={"Range": "bytes=1000-65535"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes 1000-65535/{len(data)}"
        head = await asyncio.wait_for(resp.content.readexactly(64535), 10)
        assert hub.records(server="cdn")[0].status is None  # still filling
        gate.set()
        rest = await asyncio.wait_for(resp.read(), 10)
    assert head + rest == data[1000:65536]
    assert await asyncio.wait_for(full, 10) == data
    assert cdn_gets(hub) == 1


async def test_unknown_blob(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    hub.add_blob(REPO, b"something")
    missing = sha256_digest(b"never added")
    async with session.get(blob_url(mirror, missing)) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) == "BLOB_UNKNOWN"
    async with session.head(blob_url(mirror, missing)) as resp:
        assert resp.status == 404
