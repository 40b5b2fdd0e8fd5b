"""Several upstreams behind one mirror: chosen by ns= and by path prefix; one shared blob store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.clock import FakeClock

from mirror.config import parse_config
from mirror.web.app import create_app


@pytest.fixture
async def ghcr() -> AsyncIterator[FakeHub]:
    async with FakeHub() as second:
        yield second


@pytest.fixture
async def two_upstream_mirror(
    hub: FakeHub, ghcr: FakeHub, tmp_path: Path, clock: FakeClock, aiohttp_server: object
) -> TestServer:
    config = parse_config(
        {
            "server": {"listen": "127.0.0.1:0"},
            "storage": {"path": str(tmp_path / "data")},
            "upstreams": [
                {"name": "docker.io", "url": hub.url},
                {"name": "ghcr.io", "url": ghcr.url},
            ],
        }
    )
    server: TestServer = await aiohttp_server(create_app(config, clock=clock))  # type: ignore[operator]
    return server


async def fetch(
    session: aiohttp.ClientSession, server: TestServer, path: str
) -> tuple[int, bytes, dict[str, str]]:
    async with session.get(server.make_url(path)) as response:
        return response.status, await response.read(), dict(response.headers)


def error_code(body: bytes) -> str:
    code: str = json.loads(body)["errors"][0]["code"]
    return code


def stored_blob_files(data: Path) -> list[Path]:
    return [path for path in (data / "blobs").rglob("*") if path.is_file()]


async def test_ns_and_prefix_choose_the_upstream_and_layers_are_stored_once(
    hub: FakeHub,
    ghcr: FakeHub,
    two_upstream_mirror: TestServer,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    shared = hub.make_blob(300_000, seed=1)
    only_hub, only_ghcr = hub.make_blob(200_000, seed=2), hub.make_blob(100_000, seed=3)
    alpine = hub.add_image("library/alpine", "3.19", [shared, only_hub])
    app = ghcr.add_image("owner/app", "1.0", [shared, only_ghcr])

    # The default upstream (the first) serves names without ns or prefix.
    status, body, _ = await fetch(session, two_upstream_mirror, "/v2/alpine/manifests/3.19")
    assert (status, body) == (200, alpine.manifest_bytes)
    # containerd's ns= picks ghcr.io, and the mirror says so in OCI-Namespace.
    status, body, headers = await fetch(
        session, two_upstream_mirror, "/v2/owner/app/manifests/1.0?ns=ghcr.io"
    )
    assert (status, body) == (200, app.manifest_bytes)
    assert headers["OCI-Namespace"] == "ghcr.io"
    # A path prefix picks it too, for clients that cannot send ns (dockerd).
    status, body, _ = await fetch(
        session, two_upstream_mirror, "/v2/ghcr.io/owner/app/manifests/1.0"
    )
    assert (status, body) == (200, app.manifest_bytes)
    # One answered manifest GET upstream: the prefixed request was a cache hit.
    assert ghcr.count(method="GET", path_contains="/manifests/", status=200) == 1

    for digest, data in zip(alpine.layer_digests, (shared, only_hub), strict=True):
        status, body, _ = await fetch(session, two_upstream_mirror, f"/v2/alpine/blobs/{digest}")
        assert (status, body) == (200, data)
    for digest, data in zip(app.layer_digests, (shared, only_ghcr), strict=True):
        status, body, _ = await fetch(
            session, two_upstream_mirror, f"/v2/owner/app/blobs/{digest}?ns=ghcr.io"
        )
        assert (status, body) == (200, data)

    shared_digest = alpine.layer_digests[0]
    # The shared layer came from the first upstream only, and is one file on disk.
    assert ghcr.count(server="cdn", path_contains=shared_digest) == 0
    assert hub.count(server="cdn", method="GET", path_contains=shared_digest) == 1
    names = [path.name for path in stored_blob_files(tmp_path / "data")]
    assert names.count(shared_digest.removeprefix("sha256:")) == 1
    assert len(names) == 3


async def test_same_name_on_two_upstreams_is_two_cache_entries(
    hub: FakeHub, ghcr: FakeHub, two_upstream_mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    on_hub = hub.add_image("team/tool", "1", [hub.make_blob(1000, seed=4)])
    on_ghcr = ghcr.add_image("team/tool", "1", [hub.make_blob(1000, seed=5)])
    assert on_hub.manifest_digest != on_ghcr.manifest_digest
    for _ in range(2):
        _, _, headers = await fetch(session, two_upstream_mirror, "/v2/team/tool/manifests/1")
        assert headers["Docker-Content-Digest"] == on_hub.manifest_digest
        _, _, headers = await fetch(
            session, two_upstream_mirror, "/v2/team/tool/manifests/1?ns=ghcr.io"
        )
        assert headers["Docker-Content-Digest"] == on_ghcr.manifest_digest
    # Content cached for one upstream is not served for the other without asking it.
    status, body, _ = await fetch(
        session,
        two_upstream_mirror,
        f"/v2/team/tool/blobs/{on_hub.layer_digests[0]}?ns=ghcr.io",
    )
    assert status == 404
    assert error_code(body) == "BLOB_UNKNOWN"


async def test_unknown_ns_is_refused_not_proxied(
    hub: FakeHub, ghcr: FakeHub, two_upstream_mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    status, body, _ = await fetch(
        session, two_upstream_mirror, "/v2/library/alpine/manifests/3.19?ns=quay.io"
    )
    assert status == 404
    assert error_code(body) == "NAME_UNKNOWN"
    assert hub.count() == 0 and ghcr.count() == 0
