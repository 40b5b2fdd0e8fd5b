"""Fixtures for the token-auth tests: a token server, docker-registry behind it, mirrors.

The registry is the same class as the session's anonymous one (support/registry.py), started with
`auth: token`; the images are pushed with the same helper, with credentials.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from support.images import Image, build_layout, push_images
from support.mirror_process import MirrorProcess, MirrorProcesses
from support.procs import keep_log, need
from support.registry import Registry, TokenAuth
from support.skopeo import Skopeo

from .tokens import ISSUER, SERVICE, Policy, Signer, TokenServer, write_bundle

PUSHER = ("pusher", "push-secret")
PUSHED = ["alpine:3.19", "test/oci:v1"]


@pytest.fixture(scope="session")
def token_server() -> Iterator[TokenServer]:
    need("docker-registry", "skopeo", why="Debian packages docker-registry, skopeo")
    server = TokenServer(Signer())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def token_registry(
    token_server: TokenServer, skopeo: Skopeo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """docker-registry with `auth: token`, holding PUSHED, pushed with credentials."""
    root = tmp_path_factory.mktemp("token-registry")
    bundle = write_bundle(token_server.signer, root / "root.crt")
    registry = Registry(root, auth=TokenAuth(token_server.realm, SERVICE, ISSUER, bundle))
    registry.start()
    try:
        token_server.reset(Policy(users=dict([PUSHER]), anonymous_pull=False))
        layout = build_layout(tmp_path_factory.mktemp("auth-layout"))
        registry.images = push_images(skopeo, layout, registry.host, PUSHED, creds=PUSHER)
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="session")
def pushed(token_registry: Registry) -> dict[str, Image]:
    return token_registry.images


MirrorFactory = Callable[[tuple[str, str] | None], MirrorProcess]


@pytest.fixture
def make_mirror(
    token_registry: Registry,
    mirror_processes: MirrorProcesses,
    request: pytest.FixtureRequest,
) -> MirrorFactory:
    """Start fresh mirrors in front of the token registry, with or without credentials."""
    keep_log(request, "upstream registry log", token_registry.log_path)

    def start(credentials: tuple[str, str] | None) -> MirrorProcess:
        return mirror_processes(token_registry.url, credentials=credentials)

    return start
