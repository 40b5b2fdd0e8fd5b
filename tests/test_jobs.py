"""Admin jobs: verify, gc and purge of everything started with `Prefer: respond-async` answer 202
at once and are watched at /admin/jobs/{id}; the command line's --server form goes through them
and prints what it always printed. A job still running when the mirror stops is cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fakes import FakeHub, FakeImage
from fakes.client import MakeMirror, oci_error_code, pull
from fakes.ops import Cli, assert_consistent, blob_path, flip_bytes
from support.poll import eventually

from mirror.errors import NameUnknown
from mirror.upkeep.jobs import JobRegistry, JobState, Progress
from mirror.web.appkeys import MIRROR

TOKEN = "jobs-admin-token-0123456789abcdef"
REPO = "library/alpine"
ASYNC = {"Prefer": "respond-async"}
MakeServer = Callable[[web.Application], Awaitable[TestServer]]


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    session: aiohttp.ClientSession,
    mirror: TestServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    status: int = 200,
) -> tuple[dict[str, Any], aiohttp.ClientResponse]:
    url = mirror.make_url(path)
    async with session.request(method, url, headers={**auth(), **(headers or {})}) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == status, (method, path, resp.status, body)
        assert resp.headers["Content-Type"].startswith("application/json")
        assert isinstance(body, dict)
        return body, resp


async def start_job(
    session: aiohttp.ClientSession, mirror: TestServer, method: str, path: str
) -> dict[str, Any]:
    """Start a job; check the 202 answer and where it says to look."""
    job, resp = await call(session, mirror, method, path, ASYNC, status=202)
    assert resp.headers["Location"] == f"/admin/jobs/{job['id']}"
    assert resp.headers["Preference-Applied"] == "respond-async"
    assert job["state"] == "running" and job["result"] is None and job["finished"] is None
    return job


async def finished(
    session: aiohttp.ClientSession, mirror: TestServer, job: dict[str, Any]
) -> dict[str, Any]:
    """Poll the job until it is no longer running; its last state."""

    async def state() -> dict[str, Any] | None:
        body, _ = await call(session, mirror, "GET", f"/admin/jobs/{job['id']}")
        return None if body["state"] == "running" else body

    return await eventually(state, what=f"{job['kind']} job {job['id']} ends")


async def cached_image(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> tuple[TestServer, FakeImage]:
    """A mirror holding one image: a config and two layers."""
    image = hub.add_image(REPO, "3.19", [hub.make_blob(300_000, seed=n) for n in (1, 2)])
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, image)
    return mirror, image


# -- over HTTP ------------------------------------------------------------------------------


async def test_a_verify_job_gives_what_the_synchronous_call_gives(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mirror, image = await cached_image(hub, make_mirror, session)
    at_once, _ = await call(session, mirror, "POST", "/admin/verify")
    assert at_once == {"checked": 3, "corrupt": [], "busy": 0}

    job = await start_job(session, mirror, "POST", "/admin/verify")
    assert job["kind"] == "verify"
    done = await finished(session, mirror, job)
    assert done["state"] == "succeeded", done
    assert done["result"] == at_once
    assert done["progress"] == {"done": 3, "total": 3}
    assert done["error"] is None and done["finished"] is not None

    data = tmp_path / "data"
    bad = image.layer_digests[1]
    flip_bytes(blob_path(data, bad), offset=1000)
    corrupt = await finished(
        session, mirror, await start_job(session, mirror, "POST", "/admin/verify")
    )
    assert corrupt["state"] == "succeeded"
    assert corrupt["result"] == {"checked": 3, "corrupt": [bad], "busy": 0}
    assert bad not in assert_consistent(data).rows
    # The corrupt blob is fetched again on the next pull.
    hub.reset_counts()
    await pull(session, mirror, image)
    assert hub.count(server="cdn", method="GET") == 1


async def test_gc_and_purge_everything_as_jobs(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mirror, image = await cached_image(hub, make_mirror, session)
    stored = assert_consistent(tmp_path / "data")

    gc_now, _ = await call(session, mirror, "POST", "/admin/gc")
    gc = await finished(session, mirror, await start_job(session, mirror, "POST", "/admin/gc"))
    assert (gc["kind"], gc["state"]) == ("gc", "succeeded")
    assert gc["result"] == gc_now == {"evicted_blobs": 0, "evicted_bytes": 0}

    dry_now, _ = await call(session, mirror, "DELETE", "/admin/cache?dry_run=1")
    dry_job = await start_job(session, mirror, "DELETE", "/admin/cache?dry_run=1")
    dry = await finished(session, mirror, dry_job)
    assert dry["result"] == dry_now
    assert assert_consistent(tmp_path / "data") == stored

    purge = await finished(
        session, mirror, await start_job(session, mirror, "DELETE", "/admin/cache")
    )
    assert (purge["kind"], purge["state"]) == ("purge", "succeeded")
    assert purge["result"] == {
        "tags": 1,
        "manifests": 1,
        "blobs": 3,
        "bytes": stored.file_bytes,
        "dry_run": False,
    }
    state = assert_consistent(tmp_path / "data")
    assert (state.rows, state.manifests, state.tags) == ({}, 0, 0)
    hub.reset_counts()
    await pull(session, mirror, image)
    assert hub.count(server="cdn", method="GET") == 3

    listed, _ = await call(session, mirror, "GET", "/admin/jobs")
    assert [job["kind"] for job in listed["jobs"]] == ["purge", "purge", "gc"]  # newest first
    assert listed["jobs"][0] == purge


async def test_prefer_is_read_as_rfc_7240_lists(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    mirror, _ = await cached_image(hub, make_mirror, session)
    for prefer in (
        "wait=10, respond-async",
        "Respond-Async",
        "handling=lenient; x=1,respond-async",
    ):
        job, _ = await call(session, mirror, "POST", "/admin/gc", {"Prefer": prefer}, status=202)
        assert (await finished(session, mirror, job))["state"] == "succeeded"
    for prefer in ("return=minimal", "respond-asynchronously", ""):
        body, _ = await call(session, mirror, "POST", "/admin/gc", {"Prefer": prefer})
        assert body == {"evicted_blobs": 0, "evicted_bytes": 0}, prefer


async def test_unknown_job_wrong_token_and_no_admin_api(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mirror, _ = await cached_image(hub, make_mirror, session)
    for unknown in ("nothing-here", "x" * 300):
        async with session.get(mirror.make_url(f"/admin/jobs/{unknown}"), headers=auth()) as resp:
            assert resp.status == 404
            assert await oci_error_code(resp) == "NOT_FOUND"

    job = await start_job(session, mirror, "POST", "/admin/verify")
    await finished(session, mirror, job)
    for method, path in (
        ("GET", "/admin/jobs"),
        ("GET", f"/admin/jobs/{job['id']}"),
        ("POST", "/admin/verify"),
        ("POST", "/admin/gc"),
        ("DELETE", "/admin/cache"),
    ):
        for headers in ({**ASYNC}, {**ASYNC, **auth(TOKEN[:-1] + "X")}):
            async with session.request(method, mirror.make_url(path), headers=headers) as resp:
                assert resp.status == 401, (method, path, headers)
                assert await oci_error_code(resp) == "UNAUTHORIZED"
    listed, _ = await call(session, mirror, "GET", "/admin/jobs")
    assert len(listed["jobs"]) == 1  # the refused requests started nothing
    assert len(assert_consistent(tmp_path / "data").rows) == 3  # nor purged

    without_api = await make_mirror(storage_path=tmp_path / "other")
    for path in ("/admin/jobs", f"/admin/jobs/{job['id']}"):
        async with session.get(without_api.make_url(path), headers=auth()) as resp:
            assert resp.status == 404
            await oci_error_code(resp)


async def test_a_job_running_when_the_mirror_stops_is_cancelled(
    make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    mirror = await make_mirror(admin_token=TOKEN)
    jobs = mirror.app[MIRROR].upkeep.jobs
    waiting, ended = asyncio.Event(), asyncio.Event()

    async def stuck(progress: Progress) -> dict[str, Any]:
        progress(1, 4)
        waiting.set()
        try:
            await asyncio.Event().wait()  # never set: only a cancel ends this
        finally:
            ended.set()
        return {}

    job = jobs.start("stuck", stuck)
    await waiting.wait()
    seen, _ = await call(session, mirror, "GET", f"/admin/jobs/{job.id}")
    assert seen["state"] == "running" and seen["progress"] == {"done": 1, "total": 4}

    await mirror.close()
    assert ended.is_set()
    assert job.state is JobState.FAILED and job.error == "cancelled: the mirror stopped"
    assert job.finished is not None
    with pytest.raises(RuntimeError):
        jobs.start("late", stuck)


# -- the registry on its own ----------------------------------------------------------------


async def test_failures_are_reported_and_history_is_bounded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = JobRegistry(history=3)

    async def refused(progress: Progress) -> dict[str, Any]:
        raise NameUnknown("no upstream named 'x'")

    async def broken(progress: Progress) -> dict[str, Any]:
        raise ZeroDivisionError("a bug")

    async def fine(progress: Progress) -> dict[str, Any]:
        return {"ok": True}

    try:
        first = jobs.start("refused", refused)
        second = jobs.start("broken", broken)
        await eventually(lambda: first.finished and second.finished, what="both fail")
        assert (first.state, first.error) == (JobState.FAILED, "no upstream named 'x'")
        assert (second.state, second.error) == (
            JobState.FAILED,
            "internal error: ZeroDivisionError",
        )
        assert [r.levelno for r in caplog.records if r.name == "mirror.upkeep.jobs"] == [
            logging.ERROR
        ]
        later = [jobs.start("fine", fine) for _ in range(3)]
        await eventually(lambda: all(job.finished for job in later), what="all finish")
        assert jobs.get(first.id) is None and jobs.get(second.id) is None  # forgotten
        assert jobs.recent() == list(reversed(later))
        assert all(job.result == {"ok": True} for job in later)
    finally:
        await jobs.close()


# -- the command line -----------------------------------------------------------------------


async def test_cli_with_server_runs_jobs_and_prints_their_result(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    mirror, image = await cached_image(hub, make_mirror, session)
    server = ["--server", str(mirror.make_url("/")), "--token", TOKEN]

    ok = await cli("verify", *server)
    assert ok.returncode == 0, ok
    assert ok.json() == {"checked": 3, "corrupt": [], "busy": 0}
    bad = image.layer_digests[0]
    flip_bytes(blob_path(tmp_path / "data", bad))
    corrupt = await cli("verify", *server)
    assert corrupt.returncode == 1, corrupt
    assert corrupt.json() == {"checked": 3, "corrupt": [bad], "busy": 0}
    gc = await cli("gc", *server)
    assert gc.returncode == 0 and gc.json() == {"evicted_blobs": 0, "evicted_bytes": 0}, gc
    purge = await cli("purge", "--all", *server)
    assert purge.returncode == 0, purge
    assert purge.json()["blobs"] == 2 and purge.json()["dry_run"] is False
    assert purge.stderr == ""  # not a terminal: no progress bar

    # Each went through a job (newest first), and each job's result is what was printed.
    listed, _ = await call(session, mirror, "GET", "/admin/jobs")
    runs = [(job["kind"], job["state"], job["result"]) for job in listed["jobs"]]
    assert runs == [
        ("purge", "succeeded", purge.json()),
        ("gc", "succeeded", gc.json()),
        ("verify", "succeeded", corrupt.json()),
        ("verify", "succeeded", ok.json()),
    ]


async def test_cli_uses_an_older_servers_direct_answer_and_reports_a_failed_job(
    cli: Cli, aiohttp_server: MakeServer
) -> None:
    prefers: list[str | None] = []
    polls: list[str] = []

    async def verify(request: web.Request) -> web.Response:
        prefers.append(request.headers.get("Prefer"))
        return web.json_response({"checked": 2, "corrupt": ["sha256:" + "a" * 64], "busy": 0})

    async def gc(request: web.Request) -> web.Response:
        job = {"id": "j1", "kind": "gc", "state": "running", "progress": {"done": 0, "total": None}}
        return web.json_response(job, status=202, headers={"Location": "/admin/jobs/j1"})

    async def job(request: web.Request) -> web.Response:
        polls.append(request.match_info["id"])
        state = "running" if len(polls) < 3 else "failed"
        return web.json_response({"id": "j1", "kind": "gc", "state": state, "error": "disk gone"})

    app = web.Application()
    app.router.add_post("/admin/verify", verify)
    app.router.add_post("/admin/gc", gc)
    app.router.add_get("/admin/jobs/{id}", job)
    old = await aiohttp_server(app)
    server = ["--server", str(old.make_url("/")), "--token", TOKEN]

    direct = await cli("verify", *server)
    assert prefers == ["respond-async"]
    assert direct.returncode == 1  # something was corrupt, as before
    assert direct.json()["corrupt"] == ["sha256:" + "a" * 64]

    failed = await cli("gc", *server)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr == "mirror gc: gc job j1 failed: disk gone\n"
    assert polls == ["j1"] * 3


async def test_ctrl_c_stops_the_watching_and_says_where_the_job_goes_on(
    cli: Cli, aiohttp_server: MakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    polls: list[str] = []

    async def verify(request: web.Request) -> web.Response:
        job = {"id": "j2", "kind": "verify", "state": "running"}
        return web.json_response(job, status=202, headers={"Location": "/admin/jobs/j2"})

    async def job(request: web.Request) -> web.Response:
        polls.append(request.match_info["id"])
        return web.json_response({"id": "j2", "kind": "verify", "state": "running"})

    app = web.Application()
    app.router.add_post("/admin/verify", verify)
    app.router.add_get("/admin/jobs/{id}", job)
    server = await aiohttp_server(app)
    waits: list[float] = []

    def sleep(seconds: float) -> None:  # the command's wait between polls; the 3rd is cut
        waits.append(seconds)
        if len(waits) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr("mirror.cli.admin_client.time.sleep", sleep)
    result = await cli("verify", "--server", str(server.make_url("/")), "--token", TOKEN)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"\nmirror verify: stopped watching; the job goes on: {server.make_url('/admin/jobs/j2')}\n"
    )
    assert polls == ["j2", "j2"]
    assert waits == [0.05, 0.1, 0.2]  # polled soon at first, then less often
