"""Fixtures for the real-client tests.

The upstream is the session's real docker-registry (tests/conftest.py), holding small seeded
images under Docker Hub names; the mirror is a real `python -m mirror serve` process. Both run in
the host's network namespace. Each client runs in a Sandbox (a network namespace with only `lo`),
where a forwarder makes the mirror, and nothing else, reachable at 127.0.0.1:<mirror port>.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
from support.images import CLIENT_SET, Image
from support.mirror_process import MirrorProcess, MirrorProcesses
from support.procs import in_ci, keep_log, need
from support.registry import Registry

from .daemons import DOCKER_CLI, DOCKERD, Containerd, Dockerd, Podman
from .netns import Sandbox, SandboxError

BASE = ("unshare", "nsenter", "ip", "timeout", "docker-registry", "skopeo")
WHY = "the client tests need docker.io, containerd, podman, iproute2 too"


@pytest.fixture(scope="session")
def hub_images(registry: Registry) -> dict[str, Image]:
    """The client suite's images, by the name a client pulls: "alpine:3.19", "test/oci:v1"."""
    need(*BASE, why=WHY)
    return {name: registry.images[name] for name in CLIENT_SET}


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
    registry: Registry,
    hub_images: dict[str, Image],
    sandbox: Sandbox,
    mirror_processes: MirrorProcesses,
    request: pytest.FixtureRequest,
) -> MirrorProcess:
    """A fresh mirror in front of the session's registry, reachable from inside the sandbox.

    Its tag TTL is 10m, or the value given by indirect parametrization (`"1s"`).
    """
    tag_ttl: str = getattr(request, "param", "10m")
    keep_log(request, "upstream registry log", registry.log_path)
    proc = mirror_processes(registry.url, tag_ttl=tag_ttl)
    sandbox.forward(proc.port, proc.host)
    return proc


ContainerdFactory = Callable[[], Containerd]


class DockerdFactory(Protocol):
    def __call__(self, *, insecure: bool = True, mirror_url: str | None = None) -> Dockerd: ...


class PodmanFactory(Protocol):
    def __call__(self, *, cert_dir: Path | None = None) -> Podman: ...


@pytest.fixture
def make_containerd(
    sandbox: Sandbox, workdir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[ContainerdFactory]:
    """Start containerd daemons, each with fresh state; all are stopped at the end."""
    need(*BASE, "containerd", "ctr", why=WHY)
    started: list[Containerd] = []

    def start() -> Containerd:
        name = f"containerd-{len(started)}"
        daemon = Containerd(sandbox, workdir / name, tmp_path / f"{name}.log")
        keep_log(request, name, daemon.log)
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
    need(*BASE, DOCKERD, "containerd", DOCKER_CLI, why=WHY)
    started: list[Dockerd] = []

    def start(*, insecure: bool = True, mirror_url: str | None = None) -> Dockerd:
        containerd = make_containerd()
        name = f"dockerd-{len(started)}"
        log = tmp_path / f"{name}.log"
        url = mirror_url or mirror.url
        daemon = Dockerd(sandbox, workdir / name, log, url, containerd.address, insecure=insecure)
        keep_log(request, name, log)
        started.append(daemon)
        daemon.start()
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def make_podman(sandbox: Sandbox, mirror: MirrorProcess, workdir: Path) -> Iterator[PodmanFactory]:
    """podman command runners, each with fresh storage."""
    need(*BASE, "podman", why=WHY)
    made: list[Podman] = []

    def make(*, cert_dir: Path | None = None) -> Podman:
        podman = Podman(sandbox, workdir / f"podman-{len(made)}", mirror.host, cert_dir=cert_dir)
        made.append(podman)
        return podman

    yield make
