"""podman 4.3 with a registries.conf mirror for docker.io pulls through the mirror.

podman resolves tags with GET (dockerd and containerd use HEAD). It runs as a plain command in the
sandbox with root, runroot, tmpdir, config and registries.conf of its own.
"""

from __future__ import annotations

import time

import pytest
from support.images import Image
from support.mirror_process import MirrorProcess
from support.registry import Registry

from .checks import assert_cold_pull, assert_mirror_log_clean, assert_warm_pull
from .conftest import PodmanFactory
from .daemons import Podman

SHORT_TTL = "1s"


def pull_and_check(podman: Podman, images: dict[str, Image], when: str) -> None:
    for image in images.values():
        try:
            podman.pull(image.docker_io)
        except RuntimeError as exc:
            pytest.fail(f"{when}: podman pull {image.docker_io} failed: {exc}")
        doc = podman.inspect(image.docker_io)
        repo_digests = doc.get("RepoDigests")
        assert isinstance(repo_digests, list)
        expected = f"docker.io/{image.repo}@{image.digest}"
        assert expected in repo_digests, f"{when}: {expected} not in {repo_digests}"
        assert f"sha256:{doc.get('Id')}" == image.config, f"{when}: {image.name} is {doc['Id']}"


def test_podman_pulls_through_mirror(
    make_podman: PodmanFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
) -> None:
    mark = registry.mark()
    pull_and_check(make_podman(), hub_images, "cold pull")
    assert_cold_pull(registry.requests_since(mark), hub_images.values())

    mark = registry.mark()
    pull_and_check(make_podman(), hub_images, "warm pull into fresh podman storage")
    assert_warm_pull(registry.requests_since(mark))
    assert_mirror_log_clean(mirror.stderr_path)


@pytest.mark.parametrize("mirror", [SHORT_TTL], indirect=True)
def test_podman_pulls_with_upstream_stopped(
    make_podman: PodmanFactory,
    mirror: MirrorProcess,
    upstream: Registry,
    hub_images: dict[str, Image],
) -> None:
    """Stale-if-error: with the upstream stopped and every tag expired, the cache still serves."""
    pull_and_check(make_podman(), hub_images, "cold pull")
    upstream.stop()
    time.sleep(1.5)  # past the mirror's 1s tag TTL

    pull_and_check(make_podman(), hub_images, "pull into fresh storage, upstream stopped")
    assert mirror.running, "the mirror exited while the upstream was stopped"
    assert_mirror_log_clean(mirror.stderr_path)
