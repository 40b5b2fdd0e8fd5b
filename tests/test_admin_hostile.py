"""The catalog and the admin API under hostile input; admin jobs in bursts and at a stop."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from fakes.client import MakeMirror

TOKEN = "hostile-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def raw(port: int | None, request: bytes) -> tuple[int, bytes]:
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize(
    "path",
    [
        "/admin/catalog?n=0",
        "/admin/catalog?n=-1",
        "/admin/catalog?n=%EF%BC%91",
        "/admin/catalog?n=" + "9" * 5000,
        "/admin/catalog?last=",
        "/admin/catalog?last=:",
        "/admin/catalog?last=%00",
        "/admin/catalog?last=docker.io:%ff",
        "/admin/catalog?prefix=%00",
        "/admin/catalog?prefix=" + "a" * 10000,
        "/admin/catalog?prefix=%25",
        "/admin/catalog?prefix=_",
        "/admin/catalog?upstream=",
        "/admin/catalog?upstream=%00",
        "/admin/catalog?last=x&upstream=docker.io",
        "/admin/catalog?last=a:b:c",
        "/admin/catalog?n=1&n=2",
        "/admin/catalog/..",
        "/admin/catalog/%2e%2e",
        "/admin/catalog/UPPER",
        "/admin/catalog/a//b",
        "/admin/catalog/" + "a" * 5000,
        "/admin/catalog/a?upstream=nope",
        "/admin/catalog/%00",
        "/admin/catalog/docker.io",
        "/admin/catalog/localhost:5000/x",
        "/admin/catalog/a/",
        "/admin/catalog/%ff",
        "/admin/catalog/a:b",
        "/admin/catalog/a@sha256:00",
        "/admin/jobs/%00",
        "/admin/jobs/" + "x" * 5000,
        "/admin/jobs/..",
        "/admin/cache/a?tag=%00",
        "/admin/cache/a?tag=" + "a" * 500 + "&dry_run=1",
        "/admin/manifests/sha256:zz?dry_run=1",
        "/admin/blobs/sha256:" + "0" * 64 + "?dry_run=1",
    ],
)
async def test_hostile_admin_parameters_are_never_5xx(
    make_mirror: MakeMirror, session: aiohttp.ClientSession, path: str
) -> None:
    mirror = await make_mirror(admin_token=TOKEN)
    method = (
        "DELETE" if path.startswith(("/admin/cache", "/admin/manifests", "/admin/blobs")) else "GET"
    )
    request = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    request += f"Authorization: Bearer {TOKEN}\r\n\r\n"
    status, data = await raw(mirror.port, request.encode())
    assert status < 500, data[:300]


@pytest.mark.parametrize(
    "value", [b"Bearer \xff\xfe", b"Bearer \xc3\xa9", b"Bearer " + b"\xe2\x82\xac" * 10]
)
async def test_a_non_ascii_admin_token_is_401_not_500(
    make_mirror: MakeMirror, value: bytes
) -> None:
    mirror = await make_mirror(admin_token=TOKEN)
    status, data = await raw(
        mirror.port,
        b"GET /admin/stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
        + value
        + b"\r\n\r\n",
    )
    assert status == 401, data[:300]


async def test_a_burst_of_jobs_is_bounded_and_a_stop_leaves_the_store_whole(
    make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Any
) -> None:
    """300 job requests at once: a few run, the rest are told to come back (429 with
    Retry-After), and stopping the mirror meanwhile leaves rows and files agreeing."""
    from fakes.ops import assert_consistent

    from mirror.upkeep.jobs import MAX_RUNNING
    from mirror.web.appkeys import MIRROR

    mirror = await make_mirror(admin_token=TOKEN, storage_path=tmp_path / "data")
    headers = {**AUTH, "Prefer": "respond-async"}
    calls = [("POST", "/admin/verify"), ("POST", "/admin/gc"), ("DELETE", "/admin/cache")] * 100

    async def one(method: str, path: str) -> tuple[int, str | None]:
        async with session.request(method, mirror.make_url(path), headers=headers) as resp:
            await resp.read()
            return resp.status, resp.headers.get("Retry-After")

    answers = await asyncio.gather(*(one(m, p) for m, p in calls))
    assert {status for status, _ in answers} <= {202, 429}
    assert all(retry for status, retry in answers if status == 429)
    registry = mirror.app[MIRROR].upkeep.jobs
    assert len(registry.recent()) <= 100 + MAX_RUNNING
    await mirror.close()
    assert_consistent(tmp_path / "data")


async def test_jobs_running_at_once_are_bounded() -> None:
    from mirror.errors import TooManyRequests
    from mirror.upkeep.jobs import MAX_RUNNING, JobRegistry, Progress

    registry = JobRegistry()
    release = asyncio.Event()

    async def held(progress: Progress) -> dict[str, Any]:
        await release.wait()
        return {}

    jobs = [registry.start("verify", held) for _ in range(MAX_RUNNING)]
    with pytest.raises(TooManyRequests) as refused:
        registry.start("verify", held)
    assert refused.value.headers()["Retry-After"]
    release.set()
    await asyncio.gather(*(eventually_finished(registry, job.id) for job in jobs))
    assert registry.start("gc", held)  # room again once they finished
    await registry.close()


async def eventually_finished(registry: Any, job_id: str) -> None:
    from support.poll import eventually

    await eventually(lambda: registry.get(job_id).finished is not None, what=f"job {job_id}")
