"""Upstream auth through the mirror: the token dance, credentials, and blob redirects."""

from __future__ import annotations

import base64

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror, oci_error_code, pull

PRIVATE = "acme/private"


async def test_cdn_never_sees_authorization(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/alpine", "3.19", [hub.make_blob(70_000, seed=i) for i in (1, 2)])
    await pull(session, mirror, image)
    assert hub.count(server="cdn", method="GET") == 3
    assert all(r.authorization is None for r in hub.records(server="cdn"))
    # The registry itself was asked with a Bearer token after the challenge.
    blob_requests = hub.records(server="registry", path_contains="/blobs/", status=307)
    assert blob_requests and all(
        (r.authorization or "").startswith("Bearer ") for r in blob_requests
    )


async def test_anonymous_token_dance_reuses_the_token(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/alpine", "3.19", [b"one", b"two", b"three"])
    await pull(session, mirror, image)
    tokens = hub.records(server="token")
    assert len(tokens) == 1  # one scope, one token, reused for the manifest and every blob
    assert tokens[0].query["service"] == "registry.docker.io"
    assert tokens[0].query["scope"] == "repository:library/alpine:pull"
    assert not tokens[0].basic_auth


async def test_credentials_reach_only_the_token_server(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image(PRIVATE, "v1", [hub.make_blob(50_000, seed=3)])
    hub.require_credentials(PRIVATE, "alice", "s3cret-pw")
    mirror = await make_mirror(username="alice", password="s3cret-pw")
    await pull(session, mirror, image)
    expected = "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()
    assert {r.authorization for r in hub.records(server="token")} == {expected}
    assert all(r.authorization is None for r in hub.records(server="cdn"))
    assert not any(r.basic_auth for r in hub.records(server="registry"))


async def test_private_repository_without_credentials_is_refused(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image(PRIVATE, "v1", [b"secret layer"])
    hub.require_credentials(PRIVATE, "alice", "s3cret-pw")
    async with session.get(mirror.make_url(f"/v2/{PRIVATE}/manifests/v1")) as resp:
        assert resp.status in (401, 403, 404)
        await oci_error_code(resp)
    blob = mirror.make_url(f"/v2/{PRIVATE}/blobs/{image.layer_digests[0]}")
    async with session.get(blob) as resp:
        assert resp.status in (401, 403, 404)
        assert await resp.read() != image.layers[0]
    assert hub.count(server="cdn") == 0


async def test_wrong_password_is_refused_and_not_echoed(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    hub.add_image(PRIVATE, "v1", [b"secret layer"])
    hub.require_credentials(PRIVATE, "alice", "s3cret-pw")
    mirror = await make_mirror(username="alice", password="not-the-pw")
    async with session.get(mirror.make_url(f"/v2/{PRIVATE}/manifests/v1")) as resp:
        assert resp.status in (401, 403, 404)
        body = await resp.read()
        assert b"not-the-pw" not in body
        assert "not-the-pw" not in str(resp.headers)
