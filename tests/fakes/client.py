"""Small helpers for tests that talk to the mirror over HTTP."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
from aiohttp.test_utils import TestServer

from .content import FakeImage
from .oci import ALL_MANIFEST_TYPES, sha256_digest


async def oci_error_code(response: aiohttp.ClientResponse) -> str:
    """The first OCI error code of an error response (fails the test if the body is not OCI)."""
    body = await response.json(content_type=None)
    assert isinstance(body, dict) and body.get("errors"), body
    code = body["errors"][0]["code"]
    assert isinstance(code, str)
    return code


async def read_or_none(response: aiohttp.ClientResponse) -> bytes | None:
    """The whole body, or None when the connection was cut before Content-Length bytes."""
    try:
        return await response.read()
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        return None


async def pull(
    session: aiohttp.ClientSession, mirror: TestServer, image: FakeImage, repo: str | None = None
) -> None:
    """What a client does: the manifest by tag, then the config and every layer, each checked
    byte for byte against what the fake hub holds. `repo` (default: the image's) is the name the
    client asks for."""
    name = repo or image.repo
    url = mirror.make_url(f"/v2/{name}/manifests/{image.tag}")
    async with session.get(url, headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}) as resp:
        assert resp.status == 200, resp.status
        assert resp.headers["Docker-Content-Digest"] == image.manifest_digest
        assert await resp.read() == image.manifest_bytes
    blobs = [(image.config_digest, None), *zip(image.layer_digests, image.layers, strict=True)]
    for digest, data in blobs:
        async with session.get(mirror.make_url(f"/v2/{name}/blobs/{digest}")) as resp:
            assert resp.status == 200, resp.status
            body = await resp.read()
        assert sha256_digest(body) == digest
        if data is not None:
            assert body == data


class MakeMirror(Protocol):
    """The `make_mirror` fixture: a mirror app on a real socket, with config overrides."""

    async def __call__(
        self,
        *,
        tag_ttl: str | None = None,
        offline: bool | None = None,
        username: str | None = None,
        password: str | None = None,
        connect_timeout: str | None = None,
        read_timeout: str | None = None,
        storage_path: Path | None = None,
        max_size: str | None = None,
        low_water: float | None = None,
        flush_interval: str | None = None,
        admin_token: str | None = None,
    ) -> TestServer: ...


_FOLDERS = itertools.count()
ServerFactory = Callable[..., Awaitable[TestServer]]


async def start_mirror(
    aiohttp_server: ServerFactory, base: dict[str, Any], **sections: dict[str, Any]
) -> TestServer:
    """A mirror from the `mirror_config` document `base` with these sections merged in (say
    `server={"allow": [...]}`), on a real socket, in a data folder of its own: a test may
    start several."""
    from mirror.config import parse_config  # as make_mirror: imported when a test runs
    from mirror.web.app import create_app

    document = copy.deepcopy(base)
    document["storage"]["path"] += f"-{next(_FOLDERS)}"
    for name, values in sections.items():
        document.setdefault(name, {}).update(values)
    server: TestServer = await aiohttp_server(create_app(parse_config(document)))
    return server
