"""dockerd 20.10 with `registry-mirrors` pulls Docker Hub names through the mirror.

`registry-mirrors` applies to Docker Hub names only: `docker pull test/oci:v1` is
docker.io/test/oci:v1, asked of the mirror as /v2/test/oci/…, and `alpine:3.19` as
/v2/library/alpine/…. The sandbox has no route to the real Docker Hub, so a pull that did not go
through the mirror fails.
"""

from __future__ import annotations

import time

import pytest
from support.images import Image
from support.mirror_process import MirrorProcess
from support.registry import Registry

from .checks import assert_cold_pull, assert_mirror_log_clean, assert_warm_pull
from .conftest import DockerdFactory
from .daemons import Dockerd

SHORT_TTL = "1s"


def pull_and_check(daemon: Dockerd, images: dict[str, Image], when: str) -> None:
    for image in images.values():
        try:
            daemon.pull(image.name)
        except RuntimeError as exc:
            pytest.fail(f"{when}: docker pull {image.name} failed: {exc}")
        doc = daemon.inspect(image.name)
        familiar = image.repo.removeprefix("library/")
        repo_digests = doc.get("RepoDigests")
        assert isinstance(repo_digests, list)
        assert f"{familiar}@{image.digest}" in repo_digests, (
            f"{when}: {image.name} has RepoDigests {repo_digests}, expected {image.digest}"
        )
        assert doc.get("Id") == image.config, f"{when}: {image.name} is {doc.get('Id')}"


def test_dockerd_pulls_through_mirror(
    make_dockerd: DockerdFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
) -> None:
    first = make_dockerd()
    registry_config = first.info().get("RegistryConfig")
    assert isinstance(registry_config, dict)
    assert registry_config.get("Mirrors") == [f"{mirror.url}/"], registry_config

    mark = registry.mark()
    pull_and_check(first, hub_images, "cold pull")
    assert_cold_pull(registry.requests_since(mark), hub_images.values())
    first.stop()

    # A fresh daemon (new data-root) pulls everything again: all of it from the mirror's cache.
    second = make_dockerd()
    mark = registry.mark()
    pull_and_check(second, hub_images, "warm pull from a fresh dockerd")
    assert_warm_pull(registry.requests_since(mark))
    assert_mirror_log_clean(mirror.stderr_path)


@pytest.mark.parametrize("mirror", [SHORT_TTL], indirect=True)
def test_dockerd_pulls_with_upstream_stopped(
    make_dockerd: DockerdFactory,
    mirror: MirrorProcess,
    upstream: Registry,
    hub_images: dict[str, Image],
) -> None:
    """Stale-if-error: with the upstream stopped and every tag expired, the cache still serves."""
    first = make_dockerd()
    pull_and_check(first, hub_images, "cold pull")
    first.stop()
    upstream.stop()
    time.sleep(1.5)  # past the mirror's 1s tag TTL: each tag is revalidated, and that fails

    second = make_dockerd()
    pull_and_check(second, hub_images, "pull from a fresh dockerd with the upstream stopped")
    assert mirror.running, "the mirror exited while the upstream was stopped"
    assert_mirror_log_clean(mirror.stderr_path)
