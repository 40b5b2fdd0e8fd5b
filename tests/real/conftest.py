"""Fixtures that run real processes: docker-registry as upstream, skopeo, the mirror itself."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .images import Push, build_layout, push_all
from .mirror_proc import MirrorProcess
from .procs import ToolMissing, in_ci, require_binaries
from .registry import Registry
from .skopeo import Skopeo


def _need(*binaries: str) -> None:
    """Skip when a binary is missing, except in CI (CI=true), where that is a failure."""
    try:
        require_binaries(*binaries)
    except ToolMissing as exc:
        if in_ci():
            pytest.fail(f"{exc}; CI=true, so the real-process tests must run", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    _need("skopeo")
    return Skopeo(tmp_path_factory.mktemp("skopeo"))


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The upstream: a real docker-registry, running for the whole session."""
    _need("docker-registry", "skopeo")
    reg = Registry(tmp_path_factory.mktemp("registry"))
    reg.start()
    try:
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def images(
    registry: Registry, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Push]:
    """The four test images, built from seeds and pushed once per session."""
    layout = tmp_path_factory.mktemp("layout")
    build_layout(layout)
    return push_all(skopeo, layout, registry.host)


@pytest.fixture
def upstream(registry: Registry) -> Iterator[Registry]:
    """The registry for a test that may stop it; it runs again afterwards."""
    try:
        yield registry
    finally:
        registry.start()


@dataclass(frozen=True, slots=True)
class PullSpec:
    """One way to pull an image: a reference plus skopeo's platform options."""

    label: str = field(compare=False)
    ref: str
    all_platforms: bool = False
    arch: str | None = None


class DirectPulls:
    """Pulls straight from the registry, made once per session and kept as the reference."""

    def __init__(self, skopeo: Skopeo, registry: Registry, root: Path) -> None:
        self.skopeo = skopeo
        self.registry = registry
        self.root = root
        self._done: dict[PullSpec, Path] = {}
        self._n = itertools.count()

    def get(self, spec: PullSpec) -> Path:
        if spec not in self._done:
            dest = self.root / f"direct-{next(self._n)}"
            self.skopeo.pull(
                self.registry.host,
                spec.ref,
                dest,
                all_platforms=spec.all_platforms,
                arch=spec.arch,
            )
            self._done[spec] = dest
        return self._done[spec]


@pytest.fixture(scope="session")
def direct(
    skopeo: Skopeo,
    registry: Registry,
    images: dict[str, Push],
    tmp_path_factory: pytest.TempPathFactory,
) -> DirectPulls:
    return DirectPulls(skopeo, registry, tmp_path_factory.mktemp("direct"))


MirrorFactory = Callable[..., MirrorProcess]


@pytest.fixture
def mirror_factory(
    registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[MirrorFactory]:
    """Start mirrors as subprocesses (`python -m mirror serve`); SIGTERM them at the end."""
    started: list[MirrorProcess] = []
    request.node.mirror_processes = started

    def start(*, tag_ttl: str = "10m") -> MirrorProcess:
        proc = MirrorProcess(tmp_path / f"mirror-{len(started)}", registry.url, tag_ttl=tag_ttl)
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture
def mirror(mirror_factory: MirrorFactory) -> MirrorProcess:
    """A fresh mirror (empty cache) in front of the session's registry."""
    return mirror_factory()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach each mirror's output to a failed test's report."""
    report = yield
    if not report.failed:
        return report
    for n, proc in enumerate(getattr(item, "mirror_processes", [])):
        text = proc.stderr_text()
        report.sections.append((f"mirror-{n} stderr ({proc.host})", text or "(empty)"))
    return report
