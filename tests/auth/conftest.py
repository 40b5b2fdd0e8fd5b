"""Fixtures for the token-auth tests: a token server, docker-registry behind it, mirrors."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from clients.images import PLAN, build_layout
from real.mirror_proc import MirrorProcess
from real.procs import ToolMissing, attach_log_tails, in_ci, require_binaries
from real.skopeo import Skopeo

from .tokens import Policy, Signer, TokenServer, write_bundle
from .upstream import TokenRegistry

PUSHER = ("pusher", "push-secret")
PUSHED = ["alpine:3.19", "test/oci:v1"]
LOG_TAIL = 60


def need(*binaries: str) -> None:
    """Skip when a binary is missing, except in CI (CI=true), where that is a failure."""
    try:
        require_binaries("docker-registry", "skopeo", *binaries)
    except ToolMissing as exc:
        if in_ci():
            pytest.fail(f"{exc}; CI=true, so the token-auth tests must run", pytrace=False)
        pytest.skip(str(exc))


@dataclass(frozen=True, slots=True)
class Pushed:
    repo: str
    tag: str
    digest: str  # of the tag's manifest

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"


@pytest.fixture(scope="session")
def token_server() -> Iterator[TokenServer]:
    need()
    server = TokenServer(Signer())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def token_registry(
    token_server: TokenServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TokenRegistry]:
    root = tmp_path_factory.mktemp("token-registry")
    bundle = write_bundle(token_server.signer, root / "root.crt")
    registry = TokenRegistry(root, token_server.realm, bundle)
    registry.start()
    try:
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def skopeo(tmp_path_factory: pytest.TempPathFactory) -> Skopeo:
    return Skopeo(tmp_path_factory.mktemp("auth-skopeo"))


@pytest.fixture(scope="session")
def pushed(
    token_registry: TokenRegistry,
    token_server: TokenServer,
    skopeo: Skopeo,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Pushed]:
    """Images pushed through the token server with credentials (skopeo --dest-creds)."""
    token_server.reset(Policy(users=dict([PUSHER]), anonymous_pull=False))
    layout = build_layout(tmp_path_factory.mktemp("auth-layout"))
    creds = ":".join(PUSHER)
    result: dict[str, Pushed] = {}
    for name in PUSHED:
        src, repo, tag, extra, _ = PLAN[name]
        skopeo.run(
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"--dest-creds={creds}",
            f"--tmpdir={skopeo.tmpdir}",
            *extra,
            f"oci:{layout}:{src}",
            f"docker://{token_registry.host}/{repo}:{tag}",
        )
        raw = skopeo.run(
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"--creds={creds}",
            f"docker://{token_registry.host}/{repo}:{tag}",
        )
        result[name] = Pushed(repo, tag, "sha256:" + hashlib.sha256(raw).hexdigest())
    return result


MirrorFactory = Callable[[tuple[str, str] | None], MirrorProcess]


@pytest.fixture
def make_mirror(
    token_registry: TokenRegistry,
    pushed: dict[str, Pushed],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[MirrorFactory]:
    """Start fresh mirrors in front of the token registry, with or without credentials."""
    started: list[MirrorProcess] = []
    request.node.auth_logs = [("upstream registry log", token_registry.log_path)]

    def start(credentials: tuple[str, str] | None) -> MirrorProcess:
        mirror = MirrorProcess(
            tmp_path / f"mirror-{len(started)}", token_registry.url, credentials=credentials
        )
        started.append(mirror)
        request.node.auth_logs.append((f"mirror-{len(started) - 1} stderr", mirror.stderr_path))
        mirror.start()
        return mirror

    yield start
    for mirror in started:
        mirror.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Attach the tails of the mirrors' and the registry's logs to a failure."""
    report = yield
    if not report.failed:
        return report
    attach_log_tails(report, getattr(item, "auth_logs", []), LOG_TAIL)
    return report
