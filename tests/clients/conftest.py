"""Fixtures for the real-client tests.

The upstream is a real docker-registry holding small seeded images under Docker Hub names; the
mirror is a real `python -m mirror serve` process. Both run in the host's network namespace. Each
client runs in a Sandbox (a network namespace with only `lo`), where a forwarder makes the mirror,
and nothing else, reachable at 127.0.0.1:<mirror port>.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
from real.mirror_proc import MirrorProcess
from real.procs import ToolMissing, attach_log_tails, in_ci, require_binaries
from real.registry import Registry
from real.skopeo import Skopeo

from .daemons import DOCKER_CLI, DOCKERD, Containerd, Dockerd, Podman
from .images import HubImage, build_layout, push_hub_images
from .netns import Sandbox, SandboxError

BASE = ("unshare", "nsenter", "ip", "timeout", "docker-registry", "skopeo")
LOG_TAIL = 60


def need(*binaries: str) -> None:
    """Skip when a binary is missing, except in CI (CI=true), where that is a failure."""
    try:
        require_binaries(*BASE, *binaries)
    except ToolMissing as exc:
        message = f"{exc} (the client tests need docker.io, containerd, podman too)"
        if in_ci():
            pytest.fail(f"{message}; CI=true, so the client tests must run", pytrace=False)
        pytest.skip(message)


def logs_of(request: pytest.FixtureRequest) -> list[tuple[str, Path]]:
    """The (label, file) pairs whose tails are attached to this test's report if it fails."""
    node = request.node
    if not hasattr(node, "client_logs"):
        node.client_logs = []
    logs: list[tuple[str, Path]] = node.client_logs
    return logs


@pytest.fixture(scope="session")
def hub_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The upstream for the client tests: a real docker-registry for the whole session."""
    need()
    registry = Registry(tmp_path_factory.mktemp("hub-registry"))
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def hub_images(
    hub_registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, HubImage]:
    skopeo = Skopeo(tmp_path_factory.mktemp("hub-skopeo"))
    layout = build_layout(tmp_path_factory.mktemp("hub-layout"))
    return push_hub_images(skopeo, layout, hub_registry.host)


@pytest.fixture
def upstream(hub_registry: Registry) -> Iterator[Registry]:
    """The upstream for a test that may stop it; it runs again afterwards."""
    try:
        yield hub_registry
    finally:
        hub_registry.start()


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A short directory for daemon state: unix socket paths must stay under 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    box = Sandbox(tmp_path)
    try:
        box.start()
    except (SandboxError, OSError) as exc:
        box.close()
        if in_ci():
            pytest.fail(f"cannot make a network namespace: {exc}; CI=true", pytrace=False)
        pytest.skip(f"cannot make a network namespace here: {exc}")
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def mirror(
    hub_registry: Registry,
    hub_images: dict[str, HubImage],
    sandbox: Sandbox,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[MirrorProcess]:
    """A fresh mirror in front of the hub registry, reachable from inside the sandbox.

    Its tag TTL is 10m, or the value given by indirect parametrization (`"1s"`).
    """
    tag_ttl: str = getattr(request, "param", "10m")
    proc = MirrorProcess(tmp_path / "mirror", hub_registry.url, tag_ttl=tag_ttl)
    logs_of(request).append(("mirror stderr", proc.stderr_path))
    logs_of(request).append(("upstream registry log", hub_registry.log_path))
    proc.start()
    try:
        sandbox.forward(proc.port, proc.host)
        yield proc
    finally:
        proc.stop()


ContainerdFactory = Callable[[], Containerd]
DockerdFactory = Callable[[], Dockerd]
PodmanFactory = Callable[[], Podman]


@pytest.fixture
def make_containerd(
    sandbox: Sandbox, workdir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ContainerdFactory]:
    """Start containerd daemons, each with fresh state; all are stopped at the end."""
    need("containerd", "ctr")
    started: list[Containerd] = []

    def start() -> Containerd:
        name = f"containerd-{len(started)}"
        daemon = Containerd(sandbox, workdir / name, tmp_path / f"{name}.log")
        logs_of(request).append((name, daemon.log))
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def make_dockerd(
    sandbox: Sandbox,
    mirror: MirrorProcess,
    make_containerd: ContainerdFactory,
    workdir: Path,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[DockerdFactory]:
    """Start dockerd daemons (each on a containerd of its own) with fresh state."""
    need(DOCKERD, "containerd", DOCKER_CLI)
    started: list[Dockerd] = []

    def start() -> Dockerd:
        containerd = make_containerd()
        name = f"dockerd-{len(started)}"
        log = tmp_path / f"{name}.log"
        daemon = Dockerd(sandbox, workdir / name, log, mirror.url, containerd.address)
        logs_of(request).append((name, log))
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def make_podman(sandbox: Sandbox, mirror: MirrorProcess, workdir: Path) -> Iterator[PodmanFactory]:
    """podman command runners, each with fresh storage."""
    need("podman")
    made: list[Podman] = []

    def make() -> Podman:
        podman = Podman(sandbox, workdir / f"podman-{len(made)}", mirror.host)
        made.append(podman)
        return podman

    yield make


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tails of the mirror's, the registry's and each daemon's logs to a failure."""
    report = yield
    if not report.failed:
        return report
    attach_log_tails(report, getattr(item, "client_logs", []), LOG_TAIL)
    return report
