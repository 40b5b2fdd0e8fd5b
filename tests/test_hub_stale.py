"""Stale-if-error: a tag resolved before keeps being served while the upstream cannot answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub, FakeImage
from fakes.client import MakeMirror, oci_error_code

TTL = 600.0
REPO = "library/alpine"


async def refuse_connections(hub: FakeHub) -> None:
    await hub.stop_registry()


async def fail_with_500(hub: FakeHub) -> None:
    hub.faults.registry_status = 500


async def fail_with_503(hub: FakeHub) -> None:
    hub.faults.registry_status = 503


async def rate_limit(hub: FakeHub) -> None:
    hub.faults.rate_limited = 60


async def take_token_server_down(hub: FakeHub) -> None:
    # Without revoking, a mirror still holding a valid token would never need the token server.
    hub.revoke_tokens()
    hub.faults.token_down = True


async def answer_too_slowly(hub: FakeHub) -> None:
    hub.faults.manifest_delay = 10.0


OUTAGES: dict[str, Callable[[FakeHub], Awaitable[None]]] = {
    "refused": refuse_connections,
    "500": fail_with_500,
    "503": fail_with_503,
    "429": rate_limit,
    "token-down": take_token_server_down,
    "timeout": answer_too_slowly,
}


async def cached_tag(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, tag: str = "3.19"
) -> FakeImage:
    image = hub.add_image(REPO, tag, [hub.make_blob(10_000, seed=1)])
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/{tag}")) as resp:
        assert resp.status == 200
        assert "Warning" not in resp.headers
    return image


@pytest.mark.parametrize("outage", OUTAGES, ids=list(OUTAGES))
async def test_expired_tag_served_stale_with_warning(
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    outage: str,
) -> None:
    # Short enough that the timeout case is quick, long enough for a loaded machine.
    mirror = await make_mirror(read_timeout="1s")
    image = await cached_tag(hub, mirror, session)
    await OUTAGES[outage](hub)
    clock.advance(TTL + 1)
    for method in ("GET", "HEAD"):
        url = mirror.make_url(f"/v2/{REPO}/manifests/3.19")
        async with session.request(method, url) as resp:
            assert resp.status == 200
            assert resp.headers["Warning"].startswith("299")
            assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
            assert await resp.read() == (image.manifest_bytes if method == "GET" else b"")


@pytest.mark.parametrize("outage", ["refused", "503", "token-down"])
async def test_cold_tag_during_an_outage_is_an_oci_error(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, outage: str
) -> None:
    hub.add_image(REPO, "3.19", [b"layer"])
    await OUTAGES[outage](hub)
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status >= 500 and resp.status != 500
        await oci_error_code(resp)


async def test_cached_content_served_while_upstream_is_down(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = await cached_tag(hub, mirror, session)
    blob = mirror.make_url(f"/v2/{REPO}/blobs/{image.layer_digests[0]}")
    async with session.get(blob) as resp:
        assert await resp.read() == image.layers[0]
    await hub.stop_registry()
    async with session.get(blob) as resp:
        assert resp.status == 200
        assert await resp.read() == image.layers[0]
    by_digest = mirror.make_url(f"/v2/{REPO}/manifests/{image.manifest_digest}")
    async with session.get(by_digest) as resp:
        assert await resp.read() == image.manifest_bytes


async def test_fresh_again_once_the_upstream_is_back(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    await cached_tag(hub, mirror, session)
    await hub.stop_registry()
    clock.advance(TTL + 1)
    url = mirror.make_url(f"/v2/{REPO}/manifests/3.19")
    async with session.get(url) as resp:
        assert "Warning" in resp.headers
    await hub.start_registry()
    moved = hub.add_image(REPO, "3.19", [b"a new layer"])
    clock.advance(TTL + 1)
    async with session.get(url) as resp:
        assert resp.status == 200
        assert "Warning" not in resp.headers
        assert await resp.read() == moved.manifest_bytes


async def test_retry_after_keeps_the_mirror_away(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    await cached_tag(hub, mirror, session)
    hub.add_image(REPO, "cold", [b"another layer"])
    hub.faults.rate_limited = 60
    clock.advance(TTL + 1)
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.headers["Warning"].startswith("299")
    assert hub.count(server="registry", status=429) >= 1
    # During the cool-down nothing goes upstream, not even for a tag never seen.
    hub.faults.rate_limited = None
    hub.reset_counts()
    clock.advance(30)
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/cold")) as resp:
        assert resp.status != 200
        await oci_error_code(resp)
    assert hub.count() == 0
    # After Retry-After seconds the upstream is asked again.
    clock.advance(31)
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/cold")) as resp:
        assert resp.status == 200
    assert hub.count(server="registry", path_contains="/manifests/cold") >= 1


async def test_mirror_starts_while_the_upstream_is_unreachable(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    await hub.stop_registry()
    hub.faults.token_down = True
    mirror = await make_mirror()
    async with session.get(mirror.make_url("/v2/")) as resp:
        assert resp.status == 200
    assert hub.count() == 0
