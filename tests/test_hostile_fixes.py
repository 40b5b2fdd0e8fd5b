"""One test per hostile-input finding: the Range rule on hits and fills, strict numbers, OCI
bodies for aiohttp's own refusals, escaped log lines, malformed HTTP logged once at INFO,
invalid tags as 404 MANIFEST_UNKNOWN, and an upstream refusal as 403 DENIED."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub

REPO = "library/alpine"
SIZE = 5000

ServerFactory = Callable[..., Awaitable[TestServer]]


async def test_an_upstream_refusal_is_403_denied_without_a_challenge(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/private", "v1", [b"secret layer"])
    hub.require_credentials("library/private", "alice", "s3cret-pw")
    for path in ("/manifests/v1", f"/blobs/{image.layer_digests[0]}", "/tags/list"):
        url = mirror.make_url(f"/v2/library/private{path}")
        async with session.get(url) as resp:
            assert resp.status == 403, path
            assert "WWW-Authenticate" not in resp.headers
            body = await resp.json()
            assert body["errors"][0]["code"] == "DENIED"
            assert "authentication required" not in json.dumps(body)  # the upstream's text
        async with session.head(url) as resp:
            assert resp.status == 403, path
