"""/healthz and /readyz (never the upstream), and the JSON request log of a real `mirror serve`
process, which must hold no secret: upstream password, admin token, client Authorization."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.oci import ALL_MANIFEST_TYPES
from support.mirror_process import MirrorProcesses

REPO = "library/private"
USERNAME = "ops-user"
PASSWORD = "upstream-pass-S3cr3t-4f9a"
ADMIN_TOKEN = "admin-token-S3cr3t-0123456789"
CLIENT_TOKEN = "client-bearer-S3cr3t-abcdef"
WRONG_TOKEN = "wrong-admin-S3cr3t-9876543210"
HEADER_ALLOWANCE = 2048
REQUEST_FIELDS = {"method", "path", "status", "bytes", "duration_ms", "cache"}


async def get_json(session: aiohttp.ClientSession, url: str, status: int) -> Any:
    async with session.get(url) as resp:
        assert resp.status == status, (url, resp.status)
        return await resp.json(content_type=None)


async def test_healthz_and_readyz_do_not_depend_on_the_upstream(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mirror: TestServer = await make_mirror()
    assert await get_json(session, str(mirror.make_url("/healthz")), 200) == {"status": "ok"}
    assert (await get_json(session, str(mirror.make_url("/readyz")), 200))["status"] == "ready"
    await hub.stop_registry()
    hub.reset_counts()
    for _ in range(3):
        await get_json(session, str(mirror.make_url("/readyz")), 200)
        await get_json(session, str(mirror.make_url("/healthz")), 200)
    assert hub.count() == 0

    # The store is part of readiness: without a usable tmp/ the mirror is not ready.
    tmp = tmp_path / "data" / "tmp"
    shutil.rmtree(tmp)
    unready = await get_json(session, str(mirror.make_url("/readyz")), 503)
    assert unready["status"] == "unready" and unready["problems"]
    await get_json(session, str(mirror.make_url("/healthz")), 200)
    tmp.mkdir()
    await get_json(session, str(mirror.make_url("/readyz")), 200)


def request_entries(lines: list[str]) -> list[dict[str, Any]]:
    """Every stderr line must be one JSON object; the request lines are returned."""
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
        assert isinstance(entry, dict), line
        if entry.get("logger") == "mirror.access":
            entries.append(entry)
    return entries


@pytest.mark.parametrize("log_level", ["info", "debug"])
async def test_json_request_logs_and_no_secret_in_any_line(
    log_level: str,
    hub: FakeHub,
    session: aiohttp.ClientSession,
    mirror_processes: MirrorProcesses,
    tmp_path: Path,
) -> None:
    layer = hub.make_blob(200_000, seed=1)
    image = hub.add_image(REPO, "1.0", [layer])
    hub.require_credentials(REPO, USERNAME, PASSWORD)
    config = {
        "server": {"log_format": "json"},
        "storage": {"path": str(tmp_path / "data")},
        "admin": {"token": ADMIN_TOKEN},
        "upstreams": [
            {
                "name": "docker.io",
                "url": hub.url,
                "username": USERNAME,
                "password": PASSWORD,
                "connect_timeout": "2s",
                "read_timeout": "5s",
            }
        ],
    }
    # Started in a worker thread: the fake hub runs in this event loop and must keep serving.
    proc = await asyncio.to_thread(mirror_processes, config=config, args=["--log-level", log_level])
    try:
        base = proc.url
        manifest_url = f"{base}/v2/{REPO}/manifests/1.0"
        blob_url = f"{base}/v2/{REPO}/blobs/{image.layer_digests[0]}"
        client_auth = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
        accept = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        async with session.get(manifest_url, headers={**client_auth, **accept}) as resp:
            assert resp.status == 200
            manifest_size = len(await resp.read())
        for _ in range(2):  # a miss, then a hit
            async with session.get(blob_url, headers=client_auth) as resp:
                assert resp.status == 200
                assert await resp.read() == layer
        basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        async with session.get(f"{base}/v2/", headers={"Authorization": f"Basic {basic}"}) as resp:
            assert resp.status == 200
        admin = f"{base}/admin/stats"
        async with session.get(admin, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as resp:
            assert resp.status == 200
        async with session.get(admin, headers={"Authorization": f"Bearer {WRONG_TOKEN}"}) as resp:
            assert resp.status == 401
        async with session.get(f"{base}/metrics") as resp:
            assert resp.status == 200
    finally:
        await asyncio.to_thread(proc.stop)

    # The mirror did log in upstream with the password; neither it nor any token shows.
    assert hub.count(server="token") >= 1
    upstream_tokens = {
        r.authorization.partition(" ")[2]
        for r in hub.records(server="registry")
        if r.authorization and r.authorization.startswith("Bearer ")
    }
    assert upstream_tokens, "the mirror never sent an upstream token"
    secrets = {PASSWORD, ADMIN_TOKEN, CLIENT_TOKEN, WRONG_TOKEN, basic, *upstream_tokens}
    output = proc.output()
    assert output.strip()
    for number, line in enumerate(output.splitlines(), start=1):
        leaked = [secret for secret in secrets if secret in line]
        assert not leaked, f"line {number} holds a secret: {line}"
    assert "Authorization" not in output and "authorization" not in output

    entries = request_entries(proc.stderr_lines())
    for entry in entries:
        assert set(entry) >= REQUEST_FIELDS, entry
        assert isinstance(entry["status"], int) and isinstance(entry["duration_ms"], int | float)
        assert isinstance(entry["bytes"], int)

    def one(method: str, path: str, status: int) -> list[dict[str, Any]]:
        found = [
            e for e in entries if (e["method"], e["path"], e["status"]) == (method, path, status)
        ]
        assert found, f"no request line for {method} {path} {status}"
        return found

    [manifest] = one("GET", f"/v2/{REPO}/manifests/1.0", 200)
    assert manifest["cache"] == "miss"
    blob_lines = one("GET", f"/v2/{REPO}/blobs/{image.layer_digests[0]}", 200)
    assert [e["cache"] for e in blob_lines] == ["miss", "hit"]
    # `bytes` is the body, or the body plus the response headers as aiohttp's own access log
    # counts it: either way at least the body and not much more.
    for entry, body_size in ((manifest, manifest_size), *((e, len(layer)) for e in blob_lines)):
        assert body_size <= entry["bytes"] < body_size + HEADER_ALLOWANCE, (entry, body_size)
    one("GET", "/v2/", 200)
    assert len(one("GET", "/admin/stats", 200)) == 1
    assert len(one("GET", "/admin/stats", 401)) == 1
    if log_level == "debug":  # scrapes and probes are request lines at debug level only
        one("GET", "/metrics", 200)

    # Serving a request normally logs no error (a traceback per cache hit would drown the log).
    errors = [line for line in proc.stderr_lines() if json.loads(line).get("level") == "error"]
    assert not errors, errors[0][:3000]

    # The same blob went out twice (from a fill, then from the file): one size, counted alike.
    miss, hit = blob_lines
    assert miss["bytes"] == hit["bytes"], f"miss logs {miss['bytes']}B, hit {hit['bytes']}B"
