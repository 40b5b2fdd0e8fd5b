"""podman, containerd and dockerd pull through a mirror that speaks TLS, trusting the test CA.

The mirror serves `[server] tls_cert/tls_key` issued by a throwaway CA (trustme); each client
gets that CA the way its operators give it one: podman a folder holding ca.crt (`--cert-dir`,
in place of /etc/containers/certs.d/<host:port>/), containerd `ca = …` in hosts.toml, dockerd
/etc/docker/certs.d/<host:port>/ca.crt (a host folder bound over /etc/docker in the sandbox's
own mount namespace) with the mirror in
`registry-mirrors` as https://… and not in `insecure-registries`. Without the CA each client
refuses the mirror on certificate verification, and the mirror serves it nothing.

dockerd counts 127.0.0.0/8 as an insecure registry whatever daemon.json says, and skips
certificate verification for such a mirror: the dockerd tests reach the mirror at another address
(MIRROR_ADDRESS, on the sandbox's `lo`), where its certificate is verified.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from support.images import Image
from support.mirror_process import MirrorProcess, MirrorProcesses
from support.procs import keep_log, need
from support.registry import Registry
from support.tls import MIRROR_NAMES, install, tls_config, trusting, write_ca

from . import test_containerd, test_dockerd, test_podman
from .checks import assert_cold_pull, assert_mirror_log_clean, assert_warm_pull, listing
from .conftest import ContainerdFactory, DockerdFactory, PodmanFactory
from .daemons import ClientError
from .netns import Sandbox

UNTRUSTED = ("x509", "certificate signed by unknown authority")
# Not in 127.0.0.0/8, which dockerd never verifies; on the sandbox's `lo` (TEST-NET-1: an
# address for documentation, routed nowhere, and the sandbox has no route anywhere anyway).
MIRROR_ADDRESS = "192.0.2.1"
USER = ("puller", "pull-s3cret")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def mirror(
    registry: Registry,
    hub_images: dict[str, Image],
    sandbox: Sandbox,
    mirror_processes: MirrorProcesses,
    ca: trustme.CA,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> MirrorProcess:
    """A fresh mirror serving TLS with a certificate of the test CA, reachable in the sandbox
    at 127.0.0.1:<port> and MIRROR_ADDRESS:<port> (the make_* fixtures of conftest.py take this
    one). With indirect parametrization `"htpasswd"`, only USER may pull (`[auth] htpasswd`)."""
    keep_log(request, "upstream registry log", registry.log_path)
    root = tmp_path / "tls-mirror"
    install(ca, root / "tls", names=(*MIRROR_NAMES, MIRROR_ADDRESS))
    config = tls_config(registry.url, root)
    if getattr(request, "param", None) == "htpasswd":
        need("htpasswd", why="Debian's apache2-utils")
        users = root / "htpasswd"
        subprocess.run(["htpasswd", "-c", "-B", "-b", str(users), *USER], check=True)
        config["auth"] = {"htpasswd": str(users)}
    proc = mirror_processes(config=config, client_tls=trusting(ca))
    sandbox.forward(proc.port, proc.host)
    sandbox.add_address(MIRROR_ADDRESS)
    sandbox.forward(proc.port, proc.host, address=MIRROR_ADDRESS)
    return proc


def cert_dir(ca: trustme.CA | None, folder: Path) -> Path:
    """A certificate folder: folder/ca.crt with the CA, or nothing in it.

    For dockerd's certs.d, `folder` is certs.d/<host:port>; podman's `--cert-dir` is such a
    folder itself (/etc/containers/certs.d/<host:port> is what it reads without the option)."""
    folder.mkdir(parents=True, exist_ok=True)
    if ca is not None:
        write_ca(ca, folder / "ca.crt")
    return folder


def timed(what: str, started: float) -> None:
    print(f"\n{what}: {time.monotonic() - started:.1f}s")  # the figure for the report (-s)


def assert_untrusted(exc: pytest.ExceptionInfo[ClientError]) -> None:
    message = str(exc.value)
    assert any(word in message for word in UNTRUSTED), f"not refused on verification: {message}"


def test_podman_pulls_over_tls_with_the_test_ca(
    make_podman: PodmanFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    trusted = cert_dir(ca, tmp_path / "certs.d" / mirror.host)
    mark = registry.mark()
    started = time.monotonic()
    test_podman.pull_and_check(make_podman(cert_dir=trusted), hub_images, "cold pull over TLS")
    timed("podman, TLS, cold pull", started)
    assert_cold_pull(registry.requests_since(mark), hub_images.values())

    # Fresh storage without the CA: refused on verification; nothing reaches the upstream.
    untrusting = make_podman(cert_dir=cert_dir(None, tmp_path / "empty.d" / mirror.host))
    image = next(iter(hub_images.values()))
    mark = registry.mark()
    with pytest.raises(ClientError) as refused:
        untrusting.pull(image.docker_io)
    assert_untrusted(refused)
    assert not registry.requests_since(mark), listing(registry.requests_since(mark))

    mark = registry.mark()
    started = time.monotonic()
    test_podman.pull_and_check(make_podman(cert_dir=trusted), hub_images, "warm pull over TLS")
    timed("podman, TLS, warm pull", started)
    assert_warm_pull(registry.requests_since(mark))
    assert_mirror_log_clean(mirror.stderr_path)


def test_containerd_pulls_over_tls_with_the_ca_in_hosts_toml(
    make_containerd: ContainerdFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    ca_file = write_ca(ca, tmp_path / "mirror-ca.crt")
    first = make_containerd()
    mark = registry.mark()
    started = time.monotonic()
    test_containerd.pull_and_check(first, mirror, hub_images, "cold pull over TLS", ca=ca_file)
    timed("containerd, TLS, cold pull", started)
    assert_cold_pull(registry.requests_since(mark), hub_images.values())
    first.stop()

    # Without `ca`: refused on verification (then Docker Hub itself, which the sandbox lacks).
    second = make_containerd()
    image = next(iter(hub_images.values()))
    hosts_dir = second.write_hosts(mirror.url)
    mark = registry.mark()
    with pytest.raises(ClientError) as refused:
        second.pull(image.docker_io, hosts_dir)
    assert_untrusted(refused)
    assert not registry.requests_since(mark), listing(registry.requests_since(mark))
    assert image.docker_io not in second.images()

    mark = registry.mark()
    started = time.monotonic()
    test_containerd.pull_and_check(second, mirror, hub_images, "warm pull over TLS", ca=ca_file)
    timed("containerd, TLS, warm pull", started)
    assert_warm_pull(registry.requests_since(mark))
    assert_mirror_log_clean(mirror.stderr_path)


@pytest.mark.parametrize("mirror", ["htpasswd"], indirect=True)
def test_podman_logs_in_to_a_mirror_with_htpasswd_users_and_pulls(
    make_podman: PodmanFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    trusted = cert_dir(ca, tmp_path / "certs.d" / mirror.host)
    podman = make_podman(cert_dir=trusted)
    image = next(iter(hub_images.values()))
    direct = f"{mirror.host}/{image.repo}:{image.tag}"

    # Anonymous: 401, through the registries.conf mirror and asked directly alike.
    mark = registry.mark()
    with pytest.raises(ClientError, match=r"401|unauthorized|authentication required"):
        podman.pull(image.docker_io)
    with pytest.raises(ClientError, match=r"401|unauthorized|authentication required"):
        podman.pull(direct)
    with pytest.raises(ClientError, match=r"401|unauthorized|invalid username/password"):
        podman.login(mirror.host, USER[0], "a-wrong-password")
    assert not registry.requests_since(mark), listing(registry.requests_since(mark))

    out = podman.login(mirror.host, *USER)
    assert "Login Succeeded" in out, out
    mark = registry.mark()
    started = time.monotonic()
    test_podman.pull_and_check(podman, hub_images, "pull after podman login, TLS")
    timed("podman login, TLS, cold pull", started)
    assert_cold_pull(registry.requests_since(mark), hub_images.values())
    podman.pull(direct)
    assert_mirror_log_clean(mirror.stderr_path)


@pytest.fixture
def etc_docker(sandbox: Sandbox, tmp_path: Path) -> Iterator[Path]:
    """A host folder seen as /etc/docker by the sandbox's processes: certs.d/ goes in it."""
    folder = tmp_path / "etc-docker"
    (folder / "certs.d").mkdir(parents=True)
    sandbox.bind(folder, "/etc/docker")
    yield folder


def test_dockerd_pulls_over_tls_with_the_ca_in_certs_d(
    make_dockerd: DockerdFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
    ca: trustme.CA,
    etc_docker: Path,
) -> None:
    host = f"{MIRROR_ADDRESS}:{mirror.port}"
    url = f"https://{host}"
    certs = cert_dir(ca, etc_docker / "certs.d" / host)
    first = make_dockerd(insecure=False, mirror_url=url)
    registry_config = first.info().get("RegistryConfig")
    assert isinstance(registry_config, dict)
    assert registry_config.get("Mirrors") == [f"{url}/"], registry_config
    mark = registry.mark()
    started = time.monotonic()
    test_dockerd.pull_and_check(first, hub_images, "cold pull over TLS")
    timed("dockerd, TLS, cold pull", started)
    assert_cold_pull(registry.requests_since(mark), hub_images.values())
    first.stop()

    (certs / "ca.crt").unlink()
    second = make_dockerd(insecure=False, mirror_url=url)
    mark = registry.mark()
    for image in hub_images.values():
        # The mirror is refused; dockerd falls back to Docker Hub, which the sandbox lacks.
        with pytest.raises(ClientError):
            second.pull(image.name)
    assert not registry.requests_since(mark), listing(registry.requests_since(mark))
    # Asked directly, with no fallback in the way: the verification error itself.
    image = next(iter(hub_images.values()))
    with pytest.raises(ClientError) as refused:
        second.pull(f"{host}/{image.repo}:{image.tag}")
    assert_untrusted(refused)
    assert not registry.requests_since(mark), listing(registry.requests_since(mark))
    second.stop()

    write_ca(ca, certs / "ca.crt")
    third = make_dockerd(insecure=False, mirror_url=url)
    mark = registry.mark()
    started = time.monotonic()
    test_dockerd.pull_and_check(third, hub_images, "warm pull over TLS")
    timed("dockerd, TLS, warm pull", started)
    assert_warm_pull(registry.requests_since(mark))
    assert_mirror_log_clean(mirror.stderr_path)


def test_dockerd_does_not_verify_a_mirror_on_127_0_0_0_8(
    make_dockerd: DockerdFactory,
    mirror: MirrorProcess,
    hub_images: dict[str, Image],
    etc_docker: Path,
) -> None:
    """Why the test above uses MIRROR_ADDRESS: dockerd adds 127.0.0.0/8 to the insecure
    registries itself, so a https:// mirror there is used without verifying its certificate
    (no CA anywhere, and the pull works). What docs/clients.md warns about."""
    daemon = make_dockerd(insecure=False)
    registry_config = daemon.info().get("RegistryConfig")
    assert isinstance(registry_config, dict)
    assert registry_config.get("Mirrors") == [f"{mirror.url}/"], registry_config
    assert not any(etc_docker.joinpath("certs.d").iterdir())
    image = next(iter(hub_images.values()))
    test_dockerd.pull_and_check(daemon, {image.name: image}, "pull from a mirror on 127.0.0.1")
