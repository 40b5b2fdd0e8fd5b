"""Fixtures for every suite.

The fake-hub tests: a fake Docker Hub, a hand-moved clock and in-process mirrors on sockets.
The real-process suites (tests/real, tests/clients, tests/auth): the session's docker-registry
with every test image pushed, skopeo, and mirror processes. A failed test's report gets the
tails of the logs its fixtures registered (support.procs.keep_log).

`tests/` has no `__init__.py`, so pytest puts this directory on sys.path and `fakes` and
`support` import as top-level packages.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web import Application
from fakes import FakeClock, FakeHub
from fakes.client import MakeMirror
from fakes.ops import Cli
from support.images import build_layout, push_images
from support.mirror_process import MirrorProcesses
from support.procs import LOGS, keep_log, log_tail, need
from support.registry import Registry
from support.s3server import S3Server, chosen_kind, make_server
from support.skopeo import Skopeo

# Generous for a loaded 2-core machine; the timeout tests set their own short ones.
DEFAULT_CONNECT_TIMEOUT = "2s"
DEFAULT_READ_TIMEOUT = "5s"
LOG_TAIL = 60


@pytest.fixture
async def hub() -> AsyncIterator[FakeHub]:
    async with FakeHub() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def mirror_config(hub: FakeHub, tmp_path: Path) -> dict[str, Any]:
    """The TOML document (as a dict) of a mirror whose only upstream is the fake hub."""
    return {
        "server": {"listen": "127.0.0.1:0"},
        "storage": {"path": str(tmp_path / "data")},
        "cache": {"tag_ttl": "10m"},
        "upstreams": [
            {
                "name": "docker.io",
                "url": hub.url,
                "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
                "read_timeout": DEFAULT_READ_TIMEOUT,
            }
        ],
    }


@pytest.fixture
def make_mirror(
    # mirror_config first: the hub is then set up before, and closed after, every mirror.
    mirror_config: dict[str, Any],
    clock: FakeClock,
    aiohttp_server: Callable[[Application], Awaitable[TestServer]],
) -> MakeMirror:
    """Build a mirror app from `mirror_config` plus overrides and serve it on a real socket."""

    async def make(
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
    ) -> TestServer:
        # Imported here so the fakes' own tests run while the mirror is still being written.
        from mirror.config import parse_config
        from mirror.web.app import create_app

        data = copy.deepcopy(mirror_config)
        upstream = data["upstreams"][0]
        if tag_ttl is not None:
            data["cache"]["tag_ttl"] = tag_ttl
        if storage_path is not None:
            data["storage"]["path"] = str(storage_path)
        storage = {"max_size": max_size, "low_water": low_water, "flush_interval": flush_interval}
        data["storage"].update({key: value for key, value in storage.items() if value is not None})
        if admin_token is not None:
            data["admin"] = {"token": admin_token}
        overrides = {
            "offline": offline,
            "username": username,
            "password": password,
            "connect_timeout": connect_timeout,
            "read_timeout": read_timeout,
        }
        upstream.update({key: value for key, value in overrides.items() if value is not None})
        return await aiohttp_server(create_app(parse_config(data), clock=clock))

    return make


@pytest.fixture
async def mirror(make_mirror: MakeMirror) -> TestServer:
    """A mirror with the default configuration, for tests that need only one."""
    return await make_mirror()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """A real HTTP client; the total timeout keeps a hung mirror from hanging the suite."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as client:
        yield client


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`mirror ARGS` in-process (`mirror.cli.main.main`), its output captured."""
    return Cli(capsys, monkeypatch)


@pytest.fixture(autouse=True)
def no_unhandled_server_errors(
    request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> Iterator[None]:
    """A client can get every byte while the server logs a crash: fail the test on those too."""
    yield
    if request.node.get_closest_marker("server_errors_expected"):
        return
    crashes = [
        record
        for record in caplog.get_records("call")
        if record.levelno >= logging.ERROR
        and (record.name.startswith("aiohttp") or record.name.startswith("mirror.web"))
    ]
    assert not crashes, [f"{r.name}: {r.getMessage()}" for r in crashes]


# -- real processes -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture(scope="session")
def registry(skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The upstream: a real docker-registry for the whole session, every test image pushed
    (`registry.images`, by name; support/images.py)."""
    need("docker-registry", "skopeo", why="Debian packages docker-registry, skopeo")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.start()
    try:
        layout = build_layout(tmp_path_factory.mktemp("layout"))
        reg.images = push_images(skopeo, layout, reg.host)
        yield reg
    finally:
        reg.stop()


@pytest.fixture
def upstream(registry: Registry, request: pytest.FixtureRequest) -> Iterator[Registry]:
    """The registry for a test that may stop it; it runs again afterwards."""
    keep_log(request, "upstream registry log", registry.log_path)
    try:
        yield registry
    finally:
        registry.start()


@pytest.fixture
def mirror_processes(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MirrorProcesses]:
    """Start `mirror serve` processes; each is stopped (SIGTERM) at the end of the test."""
    processes = MirrorProcesses(tmp_path, request)
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tails of the logs the test's fixtures registered to a failed report."""
    report = yield
    if report.failed:
        for label, path in item.stash.get(LOGS, []):
            report.sections.append((f"{label} ({path})", log_tail(path, LOG_TAIL)))
    return report


# The session's S3 server and how long it took to start, for the closing summary.
STARTED_S3: list[tuple[str, float]] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for kind, seconds in STARTED_S3:
        terminalreporter.write_line(
            f"S3 server for the S3 suites: {kind}, started in {seconds:.1f}s"
        )


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server for the whole session; each test makes its own bucket. SeaweedFS, or a
    one-node Ceph with RGW when MIRROR_TEST_S3=ceph (`make test-ceph`; support/s3server.py)."""
    kind = chosen_kind()
    server = make_server(kind, tmp_path_factory.mktemp(kind))
    server.start()
    STARTED_S3.append((kind, server.startup_seconds))
    try:
        yield server
    finally:
        server.stop()
