"""`mirror warm` caches every platform of an image through a running mirror."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.ops import Cli


async def test_warm_caches_every_platform_then_serves_them_offline(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    amd64 = hub.add_image("library/tool", "amd64", [hub.make_blob(40_000, seed=1)])
    arm64 = hub.add_image("library/tool", "arm64", [hub.make_blob(50_000, seed=2)])
    hub.add_index("library/tool", "1.0", [amd64, arm64])
    mirror: TestServer = await make_mirror()

    result = await cli("warm", "--server", str(mirror.make_url("")), "tool:1.0")
    assert result.returncode == 0, result.stderr
    [report] = result.json()
    assert report["errors"] == []
    assert (report["manifests"], report["blobs"]) == (3, 4)  # index + 2 manifests; 2x config+layer
    configs = [await mirror_blob(session, mirror, image.config_digest) for image in (amd64, arm64)]
    layers = [*amd64.layers, *arm64.layers]
    assert report["bytes"] == sum(len(blob) for blob in (*configs, *layers))

    # Every piece is now local: the same walk again asks the upstream nothing.
    hub.reset_counts()
    result = await cli("warm", "--server", str(mirror.make_url("")), "tool:1.0")
    assert result.returncode == 0, result.stderr
    assert hub.count() == 0


async def mirror_blob(session: aiohttp.ClientSession, mirror: TestServer, digest: str) -> bytes:
    async with session.get(mirror.make_url(f"/v2/library/tool/blobs/{digest}")) as response:
        assert response.status == 200
        return await response.read()


async def test_warm_one_platform_only(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    amd64 = hub.add_image("library/tool", "amd64", [hub.make_blob(40_000, seed=3)])
    arm64 = hub.add_image("library/tool", "arm64", [hub.make_blob(50_000, seed=4)])
    hub.add_index("library/tool", "2.0", [amd64, arm64])
    mirror = await make_mirror()
    result = await cli(
        "warm", "--server", str(mirror.make_url("")), "--platform", "linux/arm64", "tool:2.0"
    )
    assert result.returncode == 0, result.stderr
    [report] = result.json()
    assert (report["manifests"], report["blobs"]) == (2, 2)
    assert hub.count(server="cdn", path_contains=amd64.layer_digests[0]) == 0
    assert hub.count(server="cdn", method="GET", path_contains=arm64.layer_digests[0]) == 1


async def test_warm_reports_an_unknown_image_and_exits_1(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror
) -> None:
    mirror = await make_mirror()
    result = await cli("warm", "--server", str(mirror.make_url("")), "nothing:here")
    assert result.returncode == 1
    [report] = result.json()
    assert report["errors"] == ["nothing:here: manifest answered 404"]
