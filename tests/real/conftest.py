"""Fixtures of the skopeo suite: its four images, reference pulls made straight from the
registry, and a mirror process in front of the session's registry (tests/conftest.py)."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.images import SKOPEO_SET, Image
from support.mirror_process import MirrorProcess, MirrorProcesses, process_config
from support.registry import Registry
from support.s3server import S3Server
from support.skopeo import Skopeo


@pytest.fixture(scope="session")
def images(registry: Registry) -> dict[str, Image]:
    """The skopeo suite's images ("oci", "docker", "index", "list"), pushed once per session."""
    return {name: registry.images[name] for name in SKOPEO_SET}


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
    skopeo: Skopeo, registry: Registry, tmp_path_factory: pytest.TempPathFactory
) -> DirectPulls:
    return DirectPulls(skopeo, registry, tmp_path_factory.mktemp("direct"))


MirrorFactory = Callable[..., MirrorProcess]


@pytest.fixture
def mirror_factory(registry: Registry, mirror_processes: MirrorProcesses) -> MirrorFactory:
    """Start mirrors (`python -m mirror serve`) in front of the session's registry."""

    def start(*, tag_ttl: str = "10m") -> MirrorProcess:
        return mirror_processes(registry.url, tag_ttl=tag_ttl)

    return start


@pytest.fixture
def mirror(mirror_factory: MirrorFactory) -> MirrorProcess:
    """A fresh mirror (empty cache) in front of the session's registry."""
    return mirror_factory()


# -- replicas on a bucket (the S3 backend suites) ---------------------------------------------

S3_ADMIN_TOKEN = "s3-backend-admin-token"
StartReplica = Callable[..., MirrorProcess]


@pytest.fixture
def bucket(seaweedfs: S3Server) -> str:
    """A fresh bucket per test: replicas of one test share it, tests do not."""
    name = f"mirror-{uuid.uuid4().hex[:12]}"
    seaweedfs.create_bucket(name)
    return name


@pytest.fixture
def replica(
    registry: Registry,
    seaweedfs: S3Server,
    bucket: str,
    mirror_processes: MirrorProcesses,
    tmp_path: Path,
) -> StartReplica:
    """Start a mirror process on its own empty data folder, with its blobs in `bucket`."""
    count = 0

    def start(*, redirect: bool = False) -> MirrorProcess:
        nonlocal count
        count += 1
        config: dict[str, Any] = process_config(registry.url, tmp_path / f"data-{count}")
        config["storage"]["backend"] = "s3"
        config["storage.s3"] = {
            "endpoint": seaweedfs.endpoint,
            "bucket": bucket,
            "access_key": seaweedfs.access_key,
            "secret_key": seaweedfs.secret_key,
            "redirect": redirect,
        }
        config["admin"] = {"token": S3_ADMIN_TOKEN}
        return mirror_processes(config=config)

    return start
