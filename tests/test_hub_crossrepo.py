"""Cross-repository content: the shared store never serves a blob under a repository that the
upstream does not confirm holds it."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror, oci_error_code
from support.poll import eventually


async def get_blob(
    session: aiohttp.ClientSession, mirror: TestServer, repo: str, digest: str
) -> tuple[int, bytes]:
    async with session.get(mirror.make_url(f"/v2/{repo}/blobs/{digest}")) as resp:
        return resp.status, await resp.read()


async def test_shared_blob_is_confirmed_with_a_head_not_downloaded_again(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    base = hub.make_blob(500_000, seed=1)
    digest = hub.add_blob("library/a", base)
    hub.add_blob("library/b", base)
    assert await get_blob(session, mirror, "library/a", digest) == (200, base)
    hub.reset_counts()
    assert await get_blob(session, mirror, "library/b", digest) == (200, base)
    under_b = "/v2/library/b/blobs/"
    assert hub.count(server="registry", method="HEAD", path_contains=under_b) >= 1
    assert hub.count(server="registry", method="GET", path_contains="/blobs/") == 0
    assert hub.count(server="cdn", method="GET") == 0
    # Confirmed once, B now holds it: no more upstream requests.
    hub.reset_counts()
    assert await get_blob(session, mirror, "library/b", digest) == (200, base)
    assert hub.count() == 0


async def test_blob_unknown_upstream_under_another_repo_is_not_served(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(100_000, seed=2)
    digest = hub.add_blob("library/a", data)
    hub.add_blob("library/b", b"b has other things")
    assert await get_blob(session, mirror, "library/a", digest) == (200, data)
    async with session.get(mirror.make_url(f"/v2/library/b/blobs/{digest}")) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) == "BLOB_UNKNOWN"
    async with session.head(mirror.make_url(f"/v2/library/b/blobs/{digest}")) as resp:
        assert resp.status == 404
    assert hub.count(server="cdn", method="GET") == 1


async def test_blobs_referenced_by_a_cached_manifest_need_no_confirmation(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    layer = hub.make_blob(80_000, seed=3)
    first = hub.add_image("library/a", "1", [layer])
    second = hub.add_image("library/b", "1", [layer])
    assert await get_blob(session, mirror, "library/a", first.layer_digests[0]) == (200, layer)
    async with session.get(mirror.make_url("/v2/library/b/manifests/1")) as resp:
        assert await resp.read() == second.manifest_bytes
    hub.reset_counts()
    assert await get_blob(session, mirror, "library/b", second.layer_digests[0]) == (200, layer)
    assert hub.count(server="cdn", method="GET") == 0


async def test_private_content_is_not_readable_under_another_name(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    secret = hub.make_blob(60_000, seed=4)
    image = hub.add_image("acme/private", "v1", [secret])
    hub.require_credentials("acme/private", "alice", "pw")
    hub.add_image("acme/public", "v1", [b"public layer"])
    mirror = await make_mirror(username="alice", password="pw")
    async with session.get(mirror.make_url("/v2/acme/private/manifests/v1")) as resp:
        assert resp.status == 200
    layer = image.layer_digests[0]
    assert await get_blob(session, mirror, "acme/private", layer) == (200, secret)
    hub.reset_counts()
    for repo in ("acme/public", "library/alpine", "someone/else"):
        status, body = await get_blob(session, mirror, repo, layer)
        assert status == 404 and secret not in body
        url = mirror.make_url(f"/v2/{repo}/manifests/{image.manifest_digest}")
        async with session.get(url) as resp:
            assert resp.status == 404
            assert await resp.read() != image.manifest_bytes
    assert hub.count(server="cdn") == 0


async def test_blob_still_filling_is_not_served_under_another_repo(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    """While a blob downloads for A, a request under B (which the upstream says does not
    hold it) must not join that download."""
    data = hub.make_blob(2 * 1024 * 1024, seed=5)
    digest = hub.add_blob("library/a", data)
    hub.add_blob("library/b", b"b has other things")
    hub.faults.blob_gate = gate = asyncio.Event()
    filling = asyncio.create_task(get_blob(session, mirror, "library/a", digest))
    await eventually(lambda: hub.count(server="cdn", method="GET") == 1, what="the fill started")
    async with session.get(mirror.make_url(f"/v2/library/b/blobs/{digest}")) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) == "BLOB_UNKNOWN"
    async with session.head(mirror.make_url(f"/v2/library/b/blobs/{digest}")) as resp:
        assert resp.status == 404
    assert not filling.done()  # it was a fill, not a stored blob, that B was refused
    gate.set()
    assert await asyncio.wait_for(filling, 30) == (200, data)
    assert hub.count(server="cdn", method="GET") == 1
