"""`offline = true`: served from what is cached, the upstream is never dialled."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub, FakeImage
from fakes.client import MakeMirror

REPO = "library/alpine"


async def populate(
    make_mirror: MakeMirror, session: aiohttp.ClientSession, image: FakeImage, storage: Path
) -> None:
    """Pull the image through an online mirror on `storage`, then stop that mirror."""
    online = await make_mirror(storage_path=storage)
    for path in (
        f"/v2/{REPO}/manifests/{image.tag}",
        *(f"/v2/{REPO}/blobs/{d}" for d in (*image.layer_digests, image.config_digest)),
    ):
        async with session.get(online.make_url(path)) as resp:
            assert resp.status == 200
            await resp.read()
    await online.close()


async def test_offline_serves_the_cache_and_never_dials(
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    layers = [hub.make_blob(200_000, seed=1), hub.make_blob(5_000, seed=2)]
    image = hub.add_image(REPO, "3.19", layers)
    hub.add_image(REPO, "never-pulled", [b"layer"])
    storage = tmp_path / "shared-data"
    await populate(make_mirror, session, image, storage)
    hub.reset_counts()
    offline: TestServer = await make_mirror(storage_path=storage, offline=True)
    clock.advance(10 * 24 * 3600)  # long past any TTL: there is nobody to ask anyway
    async with session.get(offline.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
        assert await resp.read() == image.manifest_bytes
    async with session.get(offline.make_url("/v2/alpine/manifests/3.19")) as resp:
        assert await resp.read() == image.manifest_bytes
    digest_url = offline.make_url(f"/v2/{REPO}/manifests/{image.manifest_digest}")
    async with session.head(digest_url) as resp:
        assert resp.status == 200
    for digest, layer in zip(image.layer_digests, layers, strict=True):
        async with session.get(offline.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
            assert resp.status == 200
            assert await resp.read() == layer
    async with session.get(offline.make_url(f"/v2/{REPO}/manifests/never-pulled")) as resp:
        assert 400 <= resp.status < 600 and resp.status != 500
        body = await resp.json(content_type=None)
        assert body["errors"]
    assert hub.count() == 0


async def test_offline_mirror_with_an_empty_cache(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image(REPO, "3.19", [b"layer"])
    offline = await make_mirror(offline=True)
    async with session.get(offline.make_url("/v2/")) as resp:
        assert resp.status == 200
    for path in (f"/v2/{REPO}/manifests/3.19", f"/v2/{REPO}/blobs/{image.layer_digests[0]}"):
        async with session.get(offline.make_url(path)) as resp:
            assert resp.status in (404, 503)
    assert hub.count() == 0
