"""Malformed requests get OCI errors (never a 500) and never reach the upstream."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import oci_error_code
from fakes.oci import sha256_digest
from yarl import URL

GOOD_DIGEST = sha256_digest(b"anything")


@pytest.mark.parametrize(
    "name",
    ["Library/Alpine", "library/-alpine", "library/alpine-", "foo_/bar", "foo/.bar", "a/b__/c"],
)
async def test_malformed_name(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, name: str
) -> None:
    for path in (f"/v2/{name}/manifests/latest", f"/v2/{name}/blobs/{GOOD_DIGEST}"):
        async with session.get(mirror.make_url(path)) as resp:
            assert resp.status == 400, path
            assert await oci_error_code(resp) == "NAME_INVALID"
    assert hub.count() == 0


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:xyz",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "sha256:" + "a" * 63,
        "sha256:" + "A" * 64,
        "sha256:" + "a" * 65,
        "sha256" + "a" * 64,
    ],
)
async def test_malformed_blob_digest(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, digest: str
) -> None:
    async with session.get(mirror.make_url(f"/v2/library/alpine/blobs/{digest}")) as resp:
        assert resp.status == 400
        assert await oci_error_code(resp) == "DIGEST_INVALID"
    async with session.head(mirror.make_url(f"/v2/library/alpine/blobs/{digest}")) as resp:
        assert resp.status == 400
    assert hub.count() == 0


@pytest.mark.parametrize(
    "reference", ["sha256:xyz", "md5:d41d8cd98f00b204e9800998ecf8427e", "-tag", ".tag", "t" * 129]
)
async def test_malformed_manifest_reference(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, reference: str
) -> None:
    async with session.get(mirror.make_url(f"/v2/library/alpine/manifests/{reference}")) as resp:
        assert 400 <= resp.status < 500
        code = await oci_error_code(resp)
    if ":" in reference:
        assert code == "DIGEST_INVALID"
    assert hub.count() == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/library/alpine/blobs/uploads/"),
        ("PUT", "/v2/library/alpine/manifests/latest"),
        ("PATCH", "/v2/library/alpine/blobs/uploads/some-uuid"),
        ("DELETE", "/v2/library/alpine/manifests/latest"),
        ("DELETE", f"/v2/library/alpine/blobs/{GOOD_DIGEST}"),
    ],
)
async def test_writes_are_unsupported(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, method: str, path: str
) -> None:
    async with session.request(method, mirror.make_url(path), data=b"{}") as resp:
        assert resp.status == 405
        assert await oci_error_code(resp) == "UNSUPPORTED"
    assert hub.count() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/v2/library/alpine/manifests/",
        "/v2/library/alpine/blobs/",
        "/v2/library/alpine/tags/",
        "/v2//manifests/latest",
        "/v2/manifests/latest",
        "/v2/library/alpine/manifests/sha256:",
        "/v2/%2e%2e/%2e%2e/manifests/latest",
        "/v2/library/alpine/manifests/latest%00",
        "/v2/library/alpine/blobs/sha256:" + "0" * 64 + "/extra",
        "/v2/" + "a/" * 200 + "manifests/latest",
        "/v2/library/alpine/tags/list?n=-1",
        "/v2/library/alpine/tags/list?n=abc",
        "/v2/alpine/manifests/latest?ns=",
    ],
)
async def test_odd_paths_are_never_a_server_error(
    mirror: TestServer, session: aiohttp.ClientSession, path: str
) -> None:
    # Sent exactly as written: no client-side normalisation of dots or escapes.
    url = URL(f"http://{mirror.host}:{mirror.port}{path}", encoded=True)
    async with session.get(url) as resp:
        assert resp.status < 500, (path, resp.status)


async def test_unknown_blob_is_blob_unknown(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    hub.add_blob("library/alpine", b"other")
    async with session.get(mirror.make_url(f"/v2/library/alpine/blobs/{GOOD_DIGEST}")) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) == "BLOB_UNKNOWN"


def test_config_errors_name_the_key(hub: FakeHub) -> None:
    from mirror.config import ConfigError, parse_config

    upstream: dict[str, Any] = {"name": "docker.io", "url": hub.url}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"cache": {"tag_ttl": "ten minutes"}}, "cache.tag_ttl"),
        ({"cache": {"tag_tll": "10m"}}, "cache.tag_tll"),
        ({"upstreams": [{**upstream, "read_timeout": "soon"}]}, "read_timeout"),
        ({"upstreams": [{**upstream, "offline": "yes"}]}, "offline"),
        ({"upstreams": [{**upstream, "url": "ftp://example"}]}, "url"),
    ]
    for data, key in cases:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_config(data)
    assert issubclass(ConfigError, ValueError)
    parse_config({"cache": {"tag_ttl": "0.5s"}, "upstreams": [{**upstream, "offline": True}]})
