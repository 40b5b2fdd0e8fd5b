"""Auth failures are upstream failures: cached tags are served stale, the upstream is left alone
for a while, and a client asking for something never cached gets an honest error.

Two kinds, as `docs/architecture.md` (Choices) explains:
- the auth path is broken (the token server fails, is unreachable or hangs; the registry
  rejects a token its token server has just issued, `invalid_token`): no new token is asked for
  AUTH_COOLDOWN, for any repository; uncached content is a 503;
- a repository is refused us (the token server answers 401/403; the registry answers 401/403 to
  a fresh token, e.g. `insufficient_scope` for a private repository): that repository is not
  asked again for DENIED_FOR; uncached content keeps UpstreamDenied's status (403 DENIED).
"""

from __future__ import annotations

import asyncio
import copy
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, Protocol

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web import Application
from fakes import FakeClock, FakeHub, FakeImage
from fakes.client import MakeMirror, oci_error_code

from mirror.config import parse_config
from mirror.errors import UpstreamDenied
from mirror.upstream.auth_failures import AUTH_COOLDOWN, DENIED_FOR
from mirror.web.app import create_app

REPO = "library/alpine"
OTHER = "library/busybox"
TTL = 120.0  # shorter than a token's life (300 s): the mirror still holds its token then
TOKEN_TIMEOUT = 1.0
STALE_AFTER = 2.0
# What "did not wait for the upstream" means below: far below every timeout the tests set
# (30 s), with room for a loaded machine. A bound, not a benchmark.
PROMPT = 5.0
CLIENTS = 20

Fault = Callable[[FakeHub], Awaitable[None]]
AiohttpServer = Callable[[Application], Awaitable[TestServer]]


@pytest.fixture
def mirror_config(mirror_config: dict[str, Any]) -> dict[str, Any]:
    mirror_config["cache"]["tag_ttl"] = f"{TTL:g}s"
    mirror_config["cache"]["stale_after"] = f"{STALE_AFTER:g}s"
    mirror_config["upstreams"][0]["token_timeout"] = f"{TOKEN_TIMEOUT:g}s"
    return mirror_config


class MirrorWith(Protocol):
    async def __call__(self, **upstream: str) -> TestServer: ...


@pytest.fixture
def mirror_with(
    mirror_config: dict[str, Any], clock: FakeClock, aiohttp_server: AiohttpServer
) -> MirrorWith:
    """A mirror of `mirror_config` with any upstream keys set (make_mirror knows a few)."""

    async def start(**upstream: str) -> TestServer:
        data = copy.deepcopy(mirror_config)
        data["upstreams"][0].update(upstream)
        return await aiohttp_server(create_app(parse_config(data), clock=clock))

    return start


# -- the faults: each also revokes the tokens issued so far, as an upstream that expired or
# -- invalidated them does, so that the mirror must ask for a new one -----------------------


async def token_server_500(hub: FakeHub) -> None:
    hub.revoke_tokens()
    hub.faults.token_status = 500


async def token_server_503(hub: FakeHub) -> None:
    hub.revoke_tokens()
    hub.faults.token_down = True


async def token_server_unreachable(hub: FakeHub) -> None:
    hub.revoke_tokens()
    await hub.stop_token_server()


async def token_server_hangs(hub: FakeHub) -> None:
    hub.revoke_tokens()
    hub.faults.token_delay = 30.0


async def fresh_tokens_rejected(hub: FakeHub) -> None:
    hub.faults.reject_tokens = True  # every token, fresh ones too: error="invalid_token"


async def token_server_401(hub: FakeHub) -> None:
    hub.revoke_tokens()
    hub.faults.token_status = 401


async def token_server_403(hub: FakeHub) -> None:
    hub.revoke_tokens()
    hub.faults.token_status = 403


async def made_private(hub: FakeHub) -> None:
    # Fresh tokens come without this repository's grant: 401 insufficient_scope.
    hub.revoke_tokens()
    hub.require_credentials(REPO, "alice", "s3cret-pw")


async def registry_403(hub: FakeHub) -> None:
    hub.revoke_tokens()
    hub.faults.registry_status = 403


BROKEN: dict[str, Fault] = {
    "token-500": token_server_500,
    "token-503": token_server_503,
    "token-unreachable": token_server_unreachable,
    "token-hangs": token_server_hangs,
    "fresh-token-rejected": fresh_tokens_rejected,
}
DENIED: dict[str, Fault] = {
    "token-401": token_server_401,
    "token-403": token_server_403,
    "made-private": made_private,
    "registry-403": registry_403,
}
FAULTS = {**BROKEN, **DENIED}


async def heal(hub: FakeHub) -> None:
    hub.faults.token_status = None
    hub.faults.token_down = False
    hub.faults.token_delay = 0.0
    hub.faults.reject_tokens = False
    hub.faults.registry_status = None
    hub._private.clear()
    if "token" not in hub._runners:
        await hub.start_token_server()


def cool_down_of(fault: str) -> float:
    return AUTH_COOLDOWN if fault in BROKEN else DENIED_FOR


async def cache(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, repo: str = REPO
) -> FakeImage:
    image = hub.add_image(repo, "3.19", [hub.make_blob(10_000, seed=len(repo))])
    async with session.get(mirror.make_url(f"/v2/{repo}/manifests/3.19")) as resp:
        assert resp.status == 200
        assert resp.headers["X-Cache"] == "miss"
    return image


async def assert_stale(
    session: aiohttp.ClientSession, mirror: TestServer, image: FakeImage, method: str = "GET"
) -> None:
    url = mirror.make_url(f"/v2/{image.repo}/manifests/{image.tag}")
    async with session.request(method, url) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["X-Cache"] == "stale"
        assert resp.headers["Warning"].startswith("299 ")
        assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
        assert await resp.read() == (image.manifest_bytes if method == "GET" else b"")


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
async def test_cached_tag_is_served_stale_and_the_upstream_left_alone(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock, fault: str
) -> None:
    image = await cache(hub, mirror, session)
    await FAULTS[fault](hub)
    clock.advance(TTL + 1)
    hub.reset_counts()
    await assert_stale(session, mirror, image)
    assert hub.count() <= 3  # the tag with the old token, a new token, the tag again
    # During the cool-down, not one request goes upstream, whatever the clients ask.
    hub.reset_counts()
    for n in range(CLIENTS):
        await assert_stale(session, mirror, image, "HEAD" if n % 2 else "GET")
    clock.advance(cool_down_of(fault) - 1)
    await assert_stale(session, mirror, image)
    assert hub.count() == 0, hub.requests
    # Once it is over, the upstream is asked again: here it has healed.
    await heal(hub)
    clock.advance(2)
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200
        assert resp.headers["X-Cache"] == "miss"
        assert "Warning" not in resp.headers
    assert hub.count(server="token") == 1


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
async def test_uncached_tag_gets_an_honest_error_and_the_upstream_is_left_alone(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, fault: str
) -> None:
    hub.add_image(REPO, "3.19", [b"layer"])
    await FAULTS[fault](hub)
    # A denied repository keeps UpstreamDenied's status (403 DENIED); a broken
    # auth path is the upstream's failure: 503, as for a refused connection.
    status, code = (503, "UNAVAILABLE") if fault in BROKEN else (UpstreamDenied.status, None)
    url = mirror.make_url(f"/v2/{REPO}/manifests/3.19")
    async with session.get(url) as resp:
        assert resp.status == status
        assert code is None or await oci_error_code(resp) == code
    assert 1 <= hub.count() <= 3
    hub.reset_counts()
    for _ in range(CLIENTS):
        async with session.get(url) as resp:
            assert resp.status == status
            await oci_error_code(resp)
    assert hub.count() == 0, hub.requests


async def test_a_denied_repository_does_not_block_the_others(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    hub.add_image(REPO, "3.19", [b"secret"])
    hub.require_credentials(REPO, "alice", "s3cret-pw")
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == UpstreamDenied.status
    image = hub.add_image(OTHER, "1.36", [b"public"])
    async with session.get(mirror.make_url(f"/v2/{OTHER}/manifests/1.36")) as resp:
        assert resp.status == 200
        assert await resp.read() == image.manifest_bytes


async def test_a_valid_token_is_still_used_while_the_token_server_is_down(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """The auth cool-down stops new token requests only: a token the registry still takes is
    sent as before, so repositories with one keep being revalidated."""
    image = await cache(hub, mirror, session)
    hub.add_image(OTHER, "1.36", [b"never cached"])
    hub.faults.token_down = True
    async with session.get(mirror.make_url(f"/v2/{OTHER}/manifests/1.36")) as resp:
        assert resp.status == 503  # a new repository needs a token: the token server is down
    hub.reset_counts()
    moved = hub.add_image(REPO, "3.19", [b"moved upstream"])
    clock.advance(TTL + 1)
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200
        assert "Warning" not in resp.headers
        assert await resp.read() == moved.manifest_bytes != image.manifest_bytes
    assert hub.count(server="token") == 0
    assert hub.count(server="registry", status=401) == 0


async def test_a_token_the_upstream_expired_is_replaced_once(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Not a failure: a token the registry no longer takes (expired or revoked upstream before
    our clock says so) costs one new token, and the new one is used from then on."""
    image = await cache(hub, mirror, session)
    hub.revoke_tokens()
    clock.advance(TTL + 1)
    hub.reset_counts()
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200
        assert "Warning" not in resp.headers
        assert await resp.read() == image.manifest_bytes
    assert hub.count(server="token") == 1
    assert hub.count(server="registry", status=401) == 1
    hub.reset_counts()
    clock.advance(TTL + 1)
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.headers["X-Cache"] == "miss"
    assert hub.count() == 1  # one HEAD with the new token


async def test_the_token_request_has_a_deadline_of_its_own(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    """A hung token server costs token_timeout once, not read_timeout on every request."""
    mirror = await make_mirror(read_timeout="30s")
    hub.add_image(REPO, "3.19", [b"layer"])
    hub.faults.token_delay = 30.0
    url = mirror.make_url(f"/v2/{REPO}/manifests/3.19")
    started = time.monotonic()
    async with session.get(url) as resp:
        assert resp.status == 503
        assert await oci_error_code(resp) == "UNAVAILABLE"
    assert time.monotonic() - started < PROMPT
    assert hub.count(server="token") == 1
    started = time.monotonic()
    for _ in range(CLIENTS):
        async with session.get(url) as resp:
            assert resp.status == 503
    assert time.monotonic() - started < PROMPT
    assert hub.count(server="token") == 1


async def test_a_repository_never_seen_is_refused_without_hammering_the_upstream(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    """Private or unknown on Docker Hub: a token without the scope, then 401 insufficient_scope.
    Each blob and tag of that repository is refused from memory for DENIED_FOR."""
    image = hub.add_image(REPO, "v1", [b"secret layer"])
    hub.require_credentials(REPO, "alice", "s3cret-pw")
    paths = [f"/v2/{REPO}/manifests/v1", f"/v2/{REPO}/blobs/{image.layer_digests[0]}"]
    for path in paths * 10:
        async with session.get(mirror.make_url(path)) as resp:
            assert resp.status == UpstreamDenied.status
            assert await oci_error_code(resp) == UpstreamDenied.code
    assert hub.count(server="token") == 1
    assert hub.count(server="registry") == 2
    clock.advance(DENIED_FOR + 1)
    async with session.get(mirror.make_url(paths[0])) as resp:
        assert resp.status == UpstreamDenied.status
    assert hub.count(server="token") == 2


# -- the stale deadline: a cached answer does not wait for a hung upstream -------------------


async def test_stale_within_seconds_when_the_token_server_hangs(
    hub: FakeHub, mirror_with: MirrorWith, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    # A token deadline longer than the stale one: the stale deadline is what answers here.
    mirror = await mirror_with(token_timeout="20s", read_timeout="30s")
    image = await cache(hub, mirror, session)
    hub.revoke_tokens()
    hub.faults.token_delay = 30.0
    clock.advance(TTL + 1)
    started = time.monotonic()
    await assert_stale(session, mirror, image)
    assert time.monotonic() - started < PROMPT


async def test_stale_within_seconds_when_the_registry_hangs_then_refreshed_behind(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    mirror = await make_mirror(read_timeout="30s")
    image = await cache(hub, mirror, session)
    hub.faults.manifest_delay = 30.0
    clock.advance(TTL + 1)
    started = time.monotonic()
    await assert_stale(session, mirror, image)
    assert time.monotonic() - started < PROMPT
    # A client that comes while the resolution is still hung gets the stale answer at once:
    # the deadline counts from the start of the shared resolution, not from each client.
    started = time.monotonic()
    await assert_stale(session, mirror, image, "HEAD")
    assert time.monotonic() - started < STALE_AFTER
    assert hub.count(server="registry", method="HEAD", path_endswith="/manifests/3.19") == 1


async def test_the_resolution_goes_on_and_refreshes_the_tag(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    mirror = await make_mirror(read_timeout="30s")
    image = await cache(hub, mirror, session)
    moved = hub.add_image(REPO, "3.19", [b"moved while the registry was slow"])
    hub.faults.manifest_delay = STALE_AFTER + 1  # slower than the deadline, then it answers
    clock.advance(TTL + 1)
    await assert_stale(session, mirror, image)
    hub.faults.manifest_delay = 0.0  # for the GET of the moved manifest that follows
    url = mirror.make_url(f"/v2/{REPO}/manifests/3.19")
    deadline = time.monotonic() + 30
    while True:  # clients joining the running resolution are answered stale until it is done
        async with session.get(url) as resp:
            assert resp.status == 200
            if resp.headers["X-Cache"] == "hit":
                assert await resp.read() == moved.manifest_bytes
                break
            assert resp.headers["X-Cache"] == "stale"
        assert time.monotonic() < deadline, "the resolution never finished"
        await asyncio.sleep(0.05)
    assert hub.count(server="registry", method="HEAD", path_endswith="/manifests/3.19") == 1


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A URL whose connections never complete: a listener with a full backlog that never
    accepts, so the kernel drops further SYNs and connect() hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def test_stale_within_seconds_when_connecting_hangs(
    hub: FakeHub,
    mirror: TestServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    black_hole: str,
    mirror_with: MirrorWith,
) -> None:
    image = await cache(hub, mirror, session)
    await mirror.close()  # the same data folder, its upstream now at an address that hangs
    hung = await mirror_with(url=black_hole, connect_timeout="30s", read_timeout="30s")
    clock.advance(TTL + 1)
    started = time.monotonic()
    await assert_stale(session, hung, image)
    assert time.monotonic() - started < PROMPT


async def test_a_cold_tag_still_waits_for_the_upstream(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    """The stale deadline needs a stale answer: with nothing cached, the upstream's answer
    (here after STALE_AFTER + 1 s) is worth waiting for."""
    mirror = await make_mirror(read_timeout="30s")
    image = hub.add_image(REPO, "3.19", [b"layer"])
    hub.faults.manifest_delay = STALE_AFTER + 1
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200
        assert resp.headers["X-Cache"] == "miss"
        assert await resp.read() == image.manifest_bytes


# -- tag lists: the tags this cache knows, through auth failures and hangs -------------------


async def known_tags(hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession) -> None:
    await cache(hub, mirror, session)
    hub.add_image(REPO, "3.20", [b"never pulled through the mirror"])


@pytest.mark.parametrize("fault", ["token-503", "fresh-token-rejected", "token-401"])
async def test_tag_list_served_from_cache_through_an_auth_failure(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, fault: str
) -> None:
    await known_tags(hub, mirror, session)
    await FAULTS[fault](hub)
    async with session.get(mirror.make_url(f"/v2/{REPO}/tags/list")) as resp:
        assert resp.status == 200
        assert resp.headers["Warning"].startswith("299 ")
        assert await resp.json() == {"name": REPO, "tags": ["3.19"]}


async def test_tag_list_served_from_cache_when_the_registry_hangs(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    mirror = await make_mirror(read_timeout="30s")
    await known_tags(hub, mirror, session)
    hub.faults.tags_delay = 30.0
    started = time.monotonic()
    async with session.get(mirror.make_url(f"/v2/{REPO}/tags/list")) as resp:
        assert resp.status == 200
        assert resp.headers["Warning"].startswith("299 ")
        assert await resp.json() == {"name": REPO, "tags": ["3.19"]}
    assert time.monotonic() - started < PROMPT
