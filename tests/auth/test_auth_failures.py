"""Auth failures from a real token-auth registry: cached tags stale, the token server left alone.

docker-registry checks every token's signature and expiry itself, so the faults here are real
ones: tokens signed by a key it does not trust (invalid), tokens whose `exp` has passed
(expired), and a token server that refuses the mirror. The mirror runs in this process with a
hand-moved clock (cool-downs pass without sleeping); the registry keeps real time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web import Application
from fakes import FakeClock
from support.images import Image
from support.registry import Registry

from mirror.config import parse_config
from mirror.errors import UpstreamDenied
from mirror.upstream.auth_failures import AUTH_COOLDOWN, DENIED_FOR
from mirror.web.app import create_app

from .tokens import TOKEN_LIFETIME, Policy, Signer, TokenServer

TTL = 120.0
# Past the mirror's own idea of its token's life (300 s, less 10 %): it must ask for a new one.
TOKEN_GONE = TOKEN_LIFETIME + 1.0
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
CLIENTS = 20

AiohttpServer = Callable[[Application], Awaitable[TestServer]]


class ExpiredSigner(Signer):
    """The trusted key and certificate, but every token expired a minute ago."""

    def __init__(self, trusted: Signer) -> None:  # no new key: sign as the trusted issuer
        self.key = trusted.key
        self.cert = trusted.cert

    def issued_at(self) -> int:
        return int(time.time()) - TOKEN_LIFETIME - 60  # so it expired a minute ago


@pytest.fixture
def tokens(token_server: TokenServer) -> Iterator[TokenServer]:
    """The session's token server, anonymous pulls allowed, its signer restored afterwards."""
    trusted = token_server.signer
    token_server.reset(Policy(users={}, anonymous_pull=True))
    try:
        yield token_server
    finally:
        token_server.signer = trusted
        token_server.reset(Policy(users={}, anonymous_pull=True))


@pytest.fixture
async def mirror(
    token_registry: Registry,
    pushed: dict[str, Image],
    tmp_path: Path,
    clock: FakeClock,
    aiohttp_server: AiohttpServer,
) -> TestServer:
    config = parse_config(
        {
            "server": {"listen": "127.0.0.1:0"},
            "storage": {"path": str(tmp_path / "data")},
            "cache": {"tag_ttl": f"{TTL:g}s"},
            "upstreams": [
                {
                    "name": "docker.io",
                    "url": token_registry.url,
                    "connect_timeout": "5s",
                    "read_timeout": "10s",
                    "token_timeout": "5s",
                }
            ],
        }
    )
    return await aiohttp_server(create_app(config, clock=clock))


async def get(
    session: aiohttp.ClientSession, mirror: TestServer, image: Image, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    url = mirror.make_url(f"/v2/{image.repo}/manifests/{image.tag}")
    async with session.request(method, url, headers={"Accept": ACCEPT}) as resp:
        return resp.status, dict(resp.headers), await resp.read()


def assert_stale(answer: tuple[int, dict[str, str], bytes], image: Image) -> None:
    status, headers, body = answer
    assert status == 200, body[:300]
    assert headers["X-Cache"] == "stale"
    assert headers["Warning"].startswith("299 ")
    assert headers["Docker-Content-Digest"] == image.digest


def untrusted(tokens: TokenServer) -> None:
    tokens.signer = Signer()  # a key the registry's root bundle does not hold


def expired(tokens: TokenServer) -> None:
    tokens.signer = ExpiredSigner(tokens.signer)


@pytest.mark.parametrize("fault", [untrusted, expired], ids=["invalid-token", "expired-token"])
async def test_tokens_the_registry_rejects_serve_stale_and_pause_new_tokens(
    mirror: TestServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    tokens: TokenServer,
    pushed: dict[str, Image],
    fault: Callable[[TokenServer], None],
) -> None:
    image = pushed["alpine:3.19"]
    status, headers, _ = await get(session, mirror, image)
    assert status == 200 and headers["X-Cache"] == "miss"
    trusted = tokens.signer
    fault(tokens)
    clock.advance(TOKEN_GONE)
    tokens.reset(tokens.policy)  # counts from here
    assert_stale(await get(session, mirror, image), image)
    assert len(tokens.seen()) == 1  # one fresh token, which the registry rejected too
    for n in range(CLIENTS):
        assert_stale(await get(session, mirror, image, "HEAD" if n % 2 else "GET"), image)
    # A repository never seen is a 503 (the auth path is broken), without a token request.
    cold = pushed["test/oci:v1"]
    status, _, body = await get(session, mirror, cold)
    assert status == 503, body[:300]
    assert len(tokens.seen()) == 1
    # After the cool-down the token server is asked again; here it signs properly again.
    tokens.signer = trusted
    clock.advance(AUTH_COOLDOWN + 1)
    status, headers, _ = await get(session, mirror, image)
    assert status == 200 and headers["X-Cache"] == "miss"
    assert len(tokens.seen()) == 2


async def test_a_token_server_that_refuses_serves_stale_and_is_not_asked_again(
    mirror: TestServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    tokens: TokenServer,
    pushed: dict[str, Image],
) -> None:
    image = pushed["alpine:3.19"]
    status, _, _ = await get(session, mirror, image)
    assert status == 200
    tokens.reset(Policy(users={}, anonymous_pull=False))  # credentials needed, none given
    clock.advance(TOKEN_GONE)
    assert_stale(await get(session, mirror, image), image)
    for _ in range(CLIENTS):
        assert_stale(await get(session, mirror, image), image)
    assert len(tokens.seen()) == 1
    assert all(r.status == 401 for r in tokens.seen())
    # Nothing cached: the client gets the refusal (403 DENIED), never a 500.
    cold = pushed["test/oci:v1"]
    for _ in range(3):
        status, _, body = await get(session, mirror, cold)
        assert status == UpstreamDenied.status, body[:300]
        assert json.loads(body)["errors"][0]["code"] == UpstreamDenied.code
    assert len(tokens.seen()) == 2  # once per repository, then remembered
    clock.advance(DENIED_FOR + 1)
    tokens.reset(Policy(users={}, anonymous_pull=True))
    status, headers, _ = await get(session, mirror, image)
    assert status == 200 and headers["X-Cache"] == "miss"
