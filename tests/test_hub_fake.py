"""The fake Docker Hub itself behaves like Docker Hub where the mirror's tests rely on it."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import oci_error_code, read_or_none
from fakes.hub import FAILED
from fakes.oci import DOCKER_MANIFEST, OCI_MANIFEST, sha256_digest
from multidict import CIMultiDict
from support.poll import eventually


async def token(
    session: aiohttp.ClientSession, hub: FakeHub, name: str, basic: str | None = None
) -> str:
    headers = {"Authorization": f"Basic {basic}"} if basic else {}
    params = {"service": "registry.docker.io", "scope": f"repository:{name}:pull"}
    async with session.get(f"{hub.token_url}/token", params=params, headers=headers) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["token"] == body["access_token"] and body["expires_in"] == 300
    assert isinstance(body["token"], str)
    return body["token"]


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_challenge_then_token_then_manifest(
    hub: FakeHub, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/alpine", "3.19", [b"layer"])
    url = f"{hub.url}/v2/library/alpine/manifests/3.19"
    async with session.get(url) as resp:
        assert resp.status == 401
        assert await oci_error_code(resp) == "UNAUTHORIZED"
        challenge = resp.headers["WWW-Authenticate"]
    assert challenge == (
        f'Bearer realm="{hub.token_url}/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    auth = bearer(await token(session, hub, "library/alpine"))
    async with session.get(url, headers=auth) as resp:
        assert resp.status == 200
        assert await resp.read() == image.manifest_bytes
        assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.headers["ratelimit-remaining"] == "99;w=21600"
    async with session.head(url, headers=auth) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(image.manifest_bytes))
        assert resp.headers["ratelimit-remaining"] == "99;w=21600"  # HEAD spends no quota
        assert await resp.read() == b""
    async with session.get(f"{hub.url}/v2/", headers=auth) as resp:
        assert resp.status == 200
    # A token for one repository does not open another.
    hub.add_image("library/debian", "12", [b"x"])
    async with session.get(f"{hub.url}/v2/library/debian/manifests/12", headers=auth) as resp:
        assert resp.status == 401
    assert hub.count(server="registry", method="GET", path_contains="/manifests/") == 3


async def test_accept_lines_are_all_considered(
    hub: FakeHub, session: aiohttp.ClientSession
) -> None:
    hub.add_image("a/b/c", "v1", [b"layer"], media_type=DOCKER_MANIFEST)
    auth = bearer(await token(session, hub, "a/b/c"))
    url = f"{hub.url}/v2/a/b/c/manifests/v1"
    only_oci = CIMultiDict([*auth.items(), ("Accept", OCI_MANIFEST)])
    async with session.get(url, headers=only_oci) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) == "MANIFEST_UNKNOWN"
    two_lines = CIMultiDict([*auth.items(), ("Accept", OCI_MANIFEST), ("Accept", DOCKER_MANIFEST)])
    async with session.get(url, headers=two_lines) as resp:
        assert resp.status == 200
    assert hub.requests[-1].accept == (OCI_MANIFEST, DOCKER_MANIFEST)


async def test_blobs_redirect_to_cdn_and_are_per_repository(
    hub: FakeHub, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(200_000, seed=1)
    digest = hub.add_blob("library/a", data)
    hub.add_blob("library/b", b"other")
    for name, status in (("library/a", 307), ("library/b", 404)):
        auth = bearer(await token(session, hub, name))
        url = f"{hub.url}/v2/{name}/blobs/{digest}"
        async with session.get(url, headers=auth, allow_redirects=False) as resp:
            assert resp.status == status
            location = resp.headers.get("Location")
    assert location is None
    auth = bearer(await token(session, hub, "library/a"))
    url = f"{hub.url}/v2/library/a/blobs/{digest}"
    async with session.get(url, headers=auth, allow_redirects=False) as resp:
        location = resp.headers["Location"]
    assert location.startswith(f"{hub.cdn_url}/blobs/{digest}?sig=")
    async with session.get(location) as resp:
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert await resp.read() == data
    assert [r.authorization for r in hub.records(server="cdn")] == [None]
    hub.redirect_blobs = False
    async with session.get(url, headers=auth) as resp:
        assert await resp.read() == data
        assert resp.headers["Docker-Content-Digest"] == digest


async def test_private_repository_needs_basic_credentials(
    hub: FakeHub, session: aiohttp.ClientSession
) -> None:
    hub.add_image("acme/secret", "v1", [b"s3cret layer"])
    hub.require_credentials("acme/secret", "u", "p")
    url = f"{hub.url}/v2/acme/secret/manifests/v1"
    async with session.get(url, headers=bearer(await token(session, hub, "acme/secret"))) as resp:
        assert resp.status == 401
    good = base64.b64encode(b"u:p").decode()
    async with session.get(url, headers=bearer(await token(session, hub, "acme/secret", good))):
        pass
    assert hub.requests[-1].status == 200
    assert [r.basic_auth for r in hub.records(server="token")] == [False, True]


async def test_tags_list_paginates_with_link(hub: FakeHub, session: aiohttp.ClientSession) -> None:
    image = hub.add_image("library/alpine", "a", [b"l"])
    for tag in ("b", "c", "d"):
        hub.set_tag("library/alpine", tag, image.manifest_digest)
    auth = bearer(await token(session, hub, "library/alpine"))
    url = f"{hub.url}/v2/library/alpine/tags/list"
    async with session.get(url, params={"n": "2", "last": "a"}, headers=auth) as resp:
        assert (await resp.json())["tags"] == ["b", "c"]
        assert resp.headers["Link"] == '</v2/library/alpine/tags/list?n=2&last=c>; rel="next"'
    async with session.get(url, headers=auth) as resp:
        assert (await resp.json())["tags"] == ["a", "b", "c", "d"]
        assert "Link" not in resp.headers


async def test_blob_faults(hub: FakeHub, session: aiohttp.ClientSession) -> None:
    data = hub.make_blob(300_000, seed=2)
    digest = hub.add_blob("library/a", data)
    url = f"{hub.cdn_url}/blobs/{digest}"
    hub.faults.blob_reset_after = 1000
    async with session.get(url) as resp:
        assert resp.headers["Content-Length"] == str(len(data))
        assert await read_or_none(resp) is None
    hub.faults.blob_reset_after = None
    hub.faults.blob_wrong_bytes = True
    async with session.get(url) as resp:
        body = await resp.read()
    assert len(body) == len(data) and sha256_digest(body) != digest
    hub.faults.blob_wrong_bytes = False
    hub.faults.blob_gate = gate = asyncio.Event()
    async with session.get(url) as resp:
        first = await resp.content.readexactly(len(data) // 2)
        await eventually(lambda: hub.requests[-1].status is None)
        gate.set()
        assert first + await resp.read() == data


async def test_registry_faults(hub: FakeHub, session: aiohttp.ClientSession) -> None:
    hub.faults.registry_status = 503
    async with session.get(f"{hub.url}/v2/") as resp:
        assert resp.status == 503
        assert await oci_error_code(resp) == "UNAVAILABLE"
    hub.faults.registry_status = None
    hub.faults.rate_limited = 42
    async with session.get(f"{hub.url}/v2/") as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "42"
        assert await oci_error_code(resp) == "TOOMANYREQUESTS"
    hub.faults.rate_limited = None
    hub.faults.token_down = True
    async with session.get(f"{hub.token_url}/token") as resp:
        assert resp.status == 503


async def test_registry_stops_and_restarts_on_the_same_port(
    hub: FakeHub, session: aiohttp.ClientSession
) -> None:
    url = hub.url
    async with session.get(f"{url}/v2/") as resp:
        assert resp.status == 401
    await hub.stop_registry()
    with pytest.raises(aiohttp.ClientConnectorError):
        async with session.get(f"{url}/v2/"):
            pass
    await hub.start_registry()
    assert hub.url == url
    async with session.get(f"{url}/v2/") as resp:
        assert resp.status == 401


@pytest.mark.server_errors_expected  # the fake's own server logs the hang-up it is told about
async def test_a_client_hanging_up_mid_blob_is_recorded_as_failed(
    hub: FakeHub, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(1024 * 1024, seed=3)
    digest = hub.add_blob("library/a", data)
    hub.faults.blob_gate = gate = asyncio.Event()
    resp = await session.get(f"{hub.cdn_url}/blobs/{digest}")
    await resp.content.readexactly(1000)
    resp.close()
    gate.set()
    await eventually(lambda: hub.requests[-1].status is not None)
    assert hub.requests[-1].status == FAILED
