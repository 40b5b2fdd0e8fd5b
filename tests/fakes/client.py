"""Small helpers for tests that talk to the mirror over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohttp.test_utils import TestServer


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


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Poll a condition of the fake hub's records; bounded so a bug fails instead of hanging."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(0.01)


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
