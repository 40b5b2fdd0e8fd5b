"""containerd 1.6 (`ctr images pull --hosts-dir`) pulls Docker Hub names through the mirror.

hosts.toml sends docker.io to the mirror; containerd adds `?ns=docker.io` to every request and
the mirror echoes it in `OCI-Namespace`. `ctr` resolves and fetches in the client process, so it
runs inside the sandbox too.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from support.images import Image
from support.mirror_process import MirrorProcess
from support.registry import Registry

from .checks import assert_cold_pull, assert_mirror_log_clean, assert_warm_pull
from .conftest import ContainerdFactory
from .daemons import Containerd

SHORT_TTL = "1s"
DUMPED_REQUEST = re.compile(r"\b(GET|HEAD) (/v2/\S*) HTTP/1\.1")
ECHOED_NS = re.compile(r"^Oci-Namespace: (\S+)$", re.MULTILINE | re.IGNORECASE)
WARNING = re.compile(r"^Warning: (.*)$", re.MULTILINE | re.IGNORECASE)


def header_lines(dump: str) -> str:
    """ctr --http-dump logs each header as `msg="Name: value"`: one header per line."""
    return dump.replace('msg="', "\n").replace('"\n', "\n")


def pull_and_check(
    daemon: Containerd,
    mirror: MirrorProcess,
    images: dict[str, Image],
    when: str,
    *,
    ca: Path | None = None,
) -> list[str]:
    """Pull each image; check requests, echoed namespace and digests; return the Warnings.

    `ca`: the CA file a TLS mirror's certificate is verified against (hosts.toml `ca`)."""
    warnings: list[str] = []
    hosts_dir = daemon.write_hosts(mirror.url, ca=ca)
    for image in images.values():
        try:
            dump = daemon.pull(image.docker_io, hosts_dir, http_dump=True)
        except RuntimeError as exc:
            pytest.fail(f"{when}: ctr images pull {image.docker_io} failed: {exc}")
        requests = DUMPED_REQUEST.findall(dump)
        assert requests, f"{when}: ctr --http-dump showed no request for {image.docker_io}"
        without_ns = [path for _, path in requests if not path.endswith("?ns=docker.io")]
        assert not without_ns, f"{when}: requests without ?ns=docker.io: {without_ns}"
        paths = {path.split("?", 1)[0] for _, path in requests}
        assert all(p.startswith(f"/v2/{image.repo}/") for p in paths), paths
        headers = header_lines(dump)
        warnings += WARNING.findall(headers)
        echoed = ECHOED_NS.findall(headers)
        assert echoed and set(echoed) == {"docker.io"}, (
            f"{when}: the mirror did not echo OCI-Namespace: docker.io ({echoed})"
        )
    pulled = daemon.images()
    for image in images.values():
        assert pulled.get(image.docker_io) == image.digest, (
            f"{when}: {image.docker_io} is {pulled.get(image.docker_io)}, expected {image.digest}"
        )
    return warnings


def test_containerd_pulls_through_mirror(
    make_containerd: ContainerdFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
) -> None:
    first = make_containerd()
    mark = registry.mark()
    pull_and_check(first, mirror, hub_images, "cold pull")
    assert_cold_pull(registry.requests_since(mark), hub_images.values())
    first.stop()

    second = make_containerd()
    mark = registry.mark()
    pull_and_check(second, mirror, hub_images, "warm pull from a fresh containerd")
    assert_warm_pull(registry.requests_since(mark))
    assert_mirror_log_clean(mirror.stderr_path)


@pytest.mark.parametrize("mirror", [SHORT_TTL], indirect=True)
def test_containerd_pulls_with_upstream_stopped(
    make_containerd: ContainerdFactory,
    mirror: MirrorProcess,
    upstream: Registry,
    hub_images: dict[str, Image],
) -> None:
    """Stale-if-error: with the upstream stopped and every tag expired, the cache still serves."""
    first = make_containerd()
    assert not pull_and_check(first, mirror, hub_images, "cold pull")
    first.stop()
    upstream.stop()
    time.sleep(1.5)  # past the mirror's 1s tag TTL

    second = make_containerd()
    warnings = pull_and_check(second, mirror, hub_images, "pull with the upstream stopped")
    # Each tag was served from its last known digest, marked stale.
    assert len(warnings) >= len(hub_images), warnings
    assert all(w.startswith("299 ") and "stale" in w.lower() for w in warnings), warnings
    assert mirror.running, "the mirror exited while the upstream was stopped"
    assert_mirror_log_clean(mirror.stderr_path)
