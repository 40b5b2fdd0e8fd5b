"""Blobs through the mirror: one upstream fill per digest, verified, shared, Range-capable."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import oci_error_code
from fakes.oci import sha256_digest
from fakes.ops import metric_value, scrape
from support.poll import eventually

REPO = "library/alpine"
MIB = 1024 * 1024


def blob_url(mirror: TestServer, digest: str, repo: str = REPO) -> str:
    return str(mirror.make_url(f"/v2/{repo}/blobs/{digest}"))


def cdn_gets(hub: FakeHub) -> int:
    return hub.count(server="cdn", method="GET")


def open_connections(mirror: TestServer) -> int:
    """Client connections the mirror's HTTP server holds open right now."""
    assert mirror.runner is not None and mirror.runner.server is not None
    return len(mirror.runner.server.connections)


async def get_cut_short(session: aiohttp.ClientSession, url: str, size: int) -> int:
    """A 200 with the headers of the whole blob, then the connection cut before `size` bytes.

    Neither an error status up front nor a complete body passes: the client must have been
    promised `size` bytes and have seen the transfer fail. Returns the bytes received.
    """
    received = 0
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        assert resp.headers["Content-Length"] == str(size)
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
            async for chunk in resp.content.iter_any():
                received += len(chunk)
    assert received < size
    return received


async def get(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        return await resp.read()


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
    # Hold the upstream half-way so the fill cannot end before every request has joined it.
    hub.faults.blob_gate = gate = asyncio.Event()
    clients = 20
    tasks = [asyncio.create_task(get(session, blob_url(mirror, digest))) for _ in range(clients)]

    async def all_joined() -> float | None:
        text = await scrape(session, mirror)
        joined = metric_value(text, "mirror_coalesced_requests_total") or 0.0
        return joined if joined >= clients - 1 else None

    # Released only once the mirror counts every request but the first as joined to the fill.
    joined = await eventually(all_joined, what=f"{clients - 1} requests joined to the fill")
    assert not gate.is_set() and cdn_gets(hub) == 1
    text = await scrape(session, mirror)
    assert metric_value(text, "mirror_fills_inflight") == 1
    gate.set()
    bodies = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert all(body == data for body in bodies)
    assert joined == clients - 1
    assert metric_value(await scrape(session, mirror), "mirror_coalesced_requests_total") == joined
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
    # Released once the mirror's server has seen the connection close (its only one).
    await eventually(lambda: open_connections(mirror) == 0, what="the mirror saw the close")
    gate.set()
    # The upstream body is delivered in full: the fill kept reading.
    await eventually(
        lambda: hub.records(server="cdn")[0].status is not None, what="the CDN answered"
    )
    assert hub.records(server="cdn")[0].status == 200, "the fill stopped with its client"
    assert await asyncio.wait_for(get(session, blob_url(mirror, digest)), 10) == data
    assert cdn_gets(hub) == 1


async def test_wrong_bytes_are_not_stored_and_cut_the_client(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(MIB, seed=5)
    digest = hub.add_blob(REPO, data)
    hub.faults.blob_wrong_bytes = True
    await get_cut_short(session, blob_url(mirror, digest), len(data))
    hub.faults.blob_wrong_bytes = False
    assert await get(session, blob_url(mirror, digest)) == data
    assert cdn_gets(hub) == 2


async def test_last_byte_waits_for_verification(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    """Wrong bytes from an upstream that ends its body late: while the mirror cannot verify
    yet, its client gets every byte but the last, and then a cut, never the whole body."""
    data = hub.make_blob(MIB, seed=11)
    digest = hub.add_blob(REPO, data)
    hub.faults.blob_wrong_bytes = True
    hub.faults.blob_hold_end = end = asyncio.Event()  # chunked: no length to check against
    received = 0

    async def read_all(resp: aiohttp.ClientResponse) -> None:
        nonlocal received
        async for chunk in resp.content.iter_any():
            received += len(chunk)

    async with session.get(blob_url(mirror, digest)) as resp:
        assert resp.status == 200, resp.status
        reader = asyncio.create_task(read_all(resp))
        await eventually(lambda: received >= len(data) - 1, what="all but the last byte")
        end.set()  # now the upstream's body ends and the digest can be checked
        with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
            await asyncio.wait_for(reader, 10)
    assert received == len(data) - 1
    hub.faults.blob_wrong_bytes = False
    hub.faults.blob_hold_end = None
    assert await get(session, blob_url(mirror, digest)) == data


async def test_truncated_upstream_body_is_not_stored(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(MIB, seed=6)
    digest = hub.add_blob(REPO, data)
    hub.faults.blob_reset_after = 300_000
    await get_cut_short(session, blob_url(mirror, digest), len(data))
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
    await eventually(lambda: cdn_gets(hub) == 1, what="the fill started")
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
