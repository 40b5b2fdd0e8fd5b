"""Manifests and tags through the mirror: what is fetched upstream, when, and what is served."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub
from fakes.client import MakeMirror, oci_error_code
from fakes.content import StoredManifest
from fakes.oci import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, sha256_digest
from fakes.ops import metric_value, scrape
from multidict import CIMultiDict
from support.poll import eventually

TTL = 600.0  # the default config's "10m"
MANIFESTS = "/manifests/"


async def test_ping(mirror: TestServer, session: aiohttp.ClientSession) -> None:
    async with session.get(mirror.make_url("/v2/")) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"


async def test_cold_tag_costs_one_manifest_get(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/alpine", "3.19", [hub.make_blob(1000, seed=1)])
    async with session.get(mirror.make_url("/v2/library/alpine/manifests/3.19")) as resp:
        assert resp.status == 200
        body = await resp.read()
        assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.headers["Content-Length"] == str(len(image.manifest_bytes))
        assert resp.headers["ETag"] == f'"{image.manifest_digest}"'
    assert body == image.manifest_bytes
    assert hub.count(server="registry", method="GET", path_contains=MANIFESTS, status=200) == 1


async def test_short_name_is_a_library_repository(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/alpine", "latest", [b"layer"])
    async with session.get(mirror.make_url("/v2/alpine/manifests/latest")) as resp:
        assert resp.status == 200
        assert await resp.read() == image.manifest_bytes
    assert hub.count(server="registry", path_contains="/v2/library/alpine/manifests/") >= 1
    assert hub.count(server="registry", path_contains="/v2/alpine/") == 0


async def test_head_of_a_tag_has_digest_type_and_length(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/busybox", "1", [b"layer"], media_type=DOCKER_MANIFEST)
    for _ in range(2):  # cold, then from cache
        async with session.head(mirror.make_url("/v2/library/busybox/manifests/1")) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
            assert resp.headers["Content-Type"] == DOCKER_MANIFEST
            assert resp.headers["Content-Length"] == str(len(image.manifest_bytes))
            assert await resp.read() == b""


async def test_tag_is_trusted_within_ttl_without_any_upstream_request(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    image = hub.add_image("library/alpine", "3.19", [b"layer"])
    url = mirror.make_url("/v2/library/alpine/manifests/3.19")
    async with session.get(url) as resp:
        assert resp.status == 200
    hub.reset_counts()
    clock.advance(TTL - 1)
    for method in ("GET", "HEAD", "GET"):
        async with session.request(method, url) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
    assert hub.count() == 0


async def test_expired_tag_is_revalidated_with_one_head(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    image = hub.add_image("library/alpine", "3.19", [b"layer"])
    url = mirror.make_url("/v2/library/alpine/manifests/3.19")
    async with session.get(url) as resp:
        assert resp.status == 200
    remaining = hub.ratelimit_remaining
    hub.reset_counts()
    clock.advance(TTL + 1)
    async with session.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == image.manifest_bytes
    # Counted among answered requests: a token renewal's 401 is not a revalidation.
    assert hub.count(server="registry", method="HEAD", path_contains=MANIFESTS, status=200) == 1
    assert hub.count(server="registry", method="GET", path_contains=MANIFESTS) == 0
    assert hub.ratelimit_remaining == remaining  # no Docker Hub quota spent
    # Revalidated: trusted again for a whole TTL.
    hub.reset_counts()
    clock.advance(TTL - 1)
    async with session.get(url) as resp:
        assert resp.status == 200
    assert hub.count() == 0


async def test_moved_tag_fetches_the_new_manifest_by_digest(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    old = hub.add_image("library/alpine", "latest", [b"old layer"])
    url = mirror.make_url("/v2/library/alpine/manifests/latest")
    async with session.get(url) as resp:
        assert await resp.read() == old.manifest_bytes
    new = hub.add_image("library/alpine", "latest", [b"new layer"])
    hub.reset_counts()
    clock.advance(TTL + 1)
    async with session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Content-Digest"] == new.manifest_digest
        assert await resp.read() == new.manifest_bytes
    by_digest = f"/manifests/{new.manifest_digest}"
    assert hub.count(server="registry", method="GET", path_endswith=by_digest, status=200) == 1
    # The old manifest is still there by digest, from the cache.
    hub.reset_counts()
    old_url = mirror.make_url(f"/v2/library/alpine/manifests/{old.manifest_digest}")
    async with session.get(old_url) as resp:
        assert await resp.read() == old.manifest_bytes
    assert hub.count() == 0


async def test_manifest_by_digest_is_fetched_once_and_kept(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    image = hub.add_image("library/alpine", "3.19", [b"layer"])
    url = mirror.make_url(f"/v2/library/alpine/manifests/{image.manifest_digest}")
    for advance in (0, 1, 10 * TTL, 1e7):
        clock.advance(advance)
        async with session.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
            assert await resp.read() == image.manifest_bytes
    assert hub.count(server="registry", path_contains=MANIFESTS, status=200) == 1


async def test_index_then_platform_manifest(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    amd64 = hub.add_image("library/alpine", "amd64", [b"amd64 layer"])
    arm64 = hub.add_image("library/alpine", "arm64", [b"arm64 layer"])
    index_digest = hub.add_index("library/alpine", "3.19", [amd64, arm64])
    async with session.get(mirror.make_url("/v2/library/alpine/manifests/3.19")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == OCI_INDEX
        assert resp.headers["Docker-Content-Digest"] == index_digest
        index = await resp.json(content_type=None)
    child = index["manifests"][1]["digest"]
    assert child == arm64.manifest_digest
    async with session.get(mirror.make_url(f"/v2/library/alpine/manifests/{child}")) as resp:
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert await resp.read() == arm64.manifest_bytes


async def test_docker_manifest_list_keeps_its_media_type(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/redis", "7-amd64", [b"l"], media_type=DOCKER_MANIFEST)
    digest = hub.add_index("library/redis", "7", [image], media_type=DOCKER_LIST)
    async with session.get(mirror.make_url("/v2/library/redis/manifests/7")) as resp:
        assert resp.headers["Content-Type"] == DOCKER_LIST
        assert resp.headers["Docker-Content-Digest"] == digest


async def test_every_accept_line_reaches_the_upstream(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    # The stored type is only on the second line, as dockerd sends it.
    image = hub.add_image("library/nginx", "1", [b"layer"], media_type=DOCKER_MANIFEST)
    accept = CIMultiDict([("Accept", OCI_MANIFEST), ("Accept", f"{OCI_INDEX}, {DOCKER_MANIFEST}")])
    async with session.get(mirror.make_url("/v2/library/nginx/manifests/1"), headers=accept) as r:
        assert r.status == 200
        assert r.headers["Content-Type"] == DOCKER_MANIFEST
        assert await r.read() == image.manifest_bytes


async def test_accept_excluding_the_type_is_not_answered_with_it(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    hub.add_image("library/nginx", "1", [b"layer"], media_type=OCI_MANIFEST)
    url = mirror.make_url("/v2/library/nginx/manifests/1")
    only_docker = {"Accept": DOCKER_MANIFEST}
    async with session.get(url, headers=only_docker) as resp:  # cold
        assert resp.status == 404
        assert await oci_error_code(resp) == "MANIFEST_UNKNOWN"
    async with session.get(url) as resp:  # cached now
        assert resp.status == 200
    async with session.get(url, headers=only_docker) as resp:  # cached, still refused
        assert resp.status == 404
        assert resp.headers.get("Content-Type") != OCI_MANIFEST


async def test_unknown_tag_and_unknown_repository(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    hub.add_image("library/alpine", "3.19", [b"layer"])
    async with session.get(mirror.make_url("/v2/library/alpine/manifests/nope")) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) == "MANIFEST_UNKNOWN"
    async with session.get(mirror.make_url("/v2/library/nothere/manifests/1")) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN")


async def test_deleted_tag_is_unknown_after_ttl(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    hub.add_image("library/alpine", "edge", [b"layer"])
    url = mirror.make_url("/v2/library/alpine/manifests/edge")
    async with session.get(url) as resp:
        assert resp.status == 200
    hub.delete_tag("library/alpine", "edge")
    clock.advance(TTL + 1)
    async with session.get(url) as resp:
        # A 404 upstream is an answer, not an outage: no stale copy.
        assert resp.status == 404
        assert await oci_error_code(resp) == "MANIFEST_UNKNOWN"


async def test_tags_list(hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession) -> None:
    image = hub.add_image("library/alpine", "3.18", [b"layer"])
    for tag in ("3.19", "3.20", "edge", "latest"):
        hub.set_tag("library/alpine", tag, image.manifest_digest)
    async with session.get(mirror.make_url("/v2/library/alpine/tags/list")) as resp:
        assert resp.status == 200
        body = await resp.json(content_type=None)
    assert body["name"] == "library/alpine"
    assert sorted(body["tags"]) == ["3.18", "3.19", "3.20", "edge", "latest"]


async def test_tags_list_with_short_name_and_custom_ttl(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    image = hub.add_image("library/alpine", "1", [b"layer"])
    mirror = await make_mirror(tag_ttl="30s")
    async with session.get(mirror.make_url("/v2/alpine/tags/list")) as resp:
        assert resp.status == 200
        assert (await resp.json(content_type=None))["tags"] == ["1"]
    url = mirror.make_url("/v2/alpine/manifests/1")
    async with session.get(url) as resp:
        assert resp.status == 200
    hub.set_tag("library/alpine", "1", hub.add_image("library/alpine", "2", [b"x"]).manifest_digest)
    clock.advance(29)
    async with session.get(url) as resp:
        assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
    clock.advance(2)
    async with session.get(url) as resp:
        assert resp.headers["Docker-Content-Digest"] != image.manifest_digest


async def test_containerd_namespace_parameter(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/alpine", "3.19", [b"layer"])
    url = mirror.make_url("/v2/library/alpine/manifests/3.19?ns=docker.io")
    async with session.head(url) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
    blob = mirror.make_url(f"/v2/library/alpine/blobs/{image.layer_digests[0]}?ns=docker.io")
    async with session.get(blob) as resp:
        assert await resp.read() == image.layers[0]


@pytest.mark.parametrize("header", ["stored", "body", "absent"])
async def test_manifest_not_matching_its_digest_is_refused(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, header: str
) -> None:
    image = hub.add_image("library/alpine", "3.19", [b"layer"])
    forged = sha256_digest(b"what the client asked for")
    # An upstream answering a digest with other bytes: the mirror must check, not trust. Its
    # Docker-Content-Digest may name the digest asked for, the bytes it sent, or be missing:
    # only the digest the client asked for counts.
    hub.content.repo("library/alpine").manifests[forged] = StoredManifest(
        image.manifest_bytes, image.media_type
    )
    hub.faults.manifest_digest_header = header
    async with session.get(mirror.make_url(f"/v2/library/alpine/manifests/{forged}")) as resp:
        assert resp.status != 200
        assert await resp.read() != image.manifest_bytes
        await oci_error_code(resp)


async def test_concurrent_gets_of_a_digest_share_one_upstream_fetch(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/alpine", "3.19", [b"layer"])
    url = mirror.make_url(f"/v2/library/alpine/manifests/{image.manifest_digest}")
    hub.faults.manifest_gate = gate = asyncio.Event()
    clients = 10

    async def get() -> bytes:
        async with session.get(url) as resp:
            assert resp.status == 200, resp.status
            return await resp.read()

    tasks = [asyncio.create_task(get()) for _ in range(clients)]

    async def all_waiting() -> bool:
        # Counted just before a request joins (or starts) the fetch of that digest.
        text = await scrape(session, mirror)
        labels = {"kind": "manifest", "result": "miss"}
        return metric_value(text, "mirror_cache_requests_total", labels) == clients

    # The upstream answers only once every request is waiting on the fetch.
    await eventually(all_waiting, what=f"{clients} requests waiting on the manifest fetch")
    gate.set()
    assert await asyncio.wait_for(asyncio.gather(*tasks), 30) == [image.manifest_bytes] * clients
    by_digest = f"/manifests/{image.manifest_digest}"
    assert hub.count(server="registry", method="GET", path_endswith=by_digest, status=200) == 1
