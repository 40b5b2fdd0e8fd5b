"""dockerd, containerd and podman pull imported images from an inside mirror with no upstream.

The connected side locks and exports the client images (every platform) through a mirror in
front of the session's registry; the inside mirror is `offline = true` with an upstream URL
nothing listens on, gets the bundle through `POST /admin/import`, and is the only thing the
sandboxed clients can reach. The real registry sees no request while they pull.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.bundles import TOKEN, inside_mirror, lock_and_export, mirror_cli
from support.images import Image
from support.mirror_process import MirrorProcess, MirrorProcesses
from support.registry import Registry

from .checks import assert_mirror_log_clean
from .conftest import ContainerdFactory, DockerdFactory, PodmanFactory
from .netns import Sandbox
from .test_containerd import pull_and_check as containerd_pulls
from .test_dockerd import pull_and_check as dockerd_pulls
from .test_podman import pull_and_check as podman_pulls


@pytest.fixture
def mirror(
    registry: Registry,
    hub_images: dict[str, Image],
    sandbox: Sandbox,
    mirror_processes: MirrorProcesses,
    tmp_path: Path,
) -> MirrorProcess:
    """The inside mirror, the bundle of every client image imported, seen by the sandbox."""
    outside = mirror_processes(registry.url)
    images_txt = "".join(f"{name}\n" for name in hub_images)
    _, bundle = lock_and_export(outside.url, images_txt, tmp_path / "connected")
    outside.stop()
    inside = inside_mirror(mirror_processes, tmp_path)
    run = mirror_cli("import", str(bundle), "--server", inside.url, token=TOKEN)
    assert run.returncode == 0, run.stderr
    sandbox.forward(inside.port, inside.host)
    return inside


def test_dockerd_pulls_imported_images(
    make_dockerd: DockerdFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
) -> None:
    mark = registry.mark()
    dockerd_pulls(make_dockerd(), hub_images, "pull from the inside mirror")
    registry.sync()  # every request it answered is in its log
    assert registry.requests_since(mark) == []
    assert_mirror_log_clean(mirror.stderr_path)


def test_containerd_pulls_imported_images(
    make_containerd: ContainerdFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
) -> None:
    mark = registry.mark()
    warnings = containerd_pulls(make_containerd(), mirror, hub_images, "pull from inside")
    assert warnings == []  # the site's chosen tags: served as they are, not as stale
    registry.sync()  # every request it answered is in its log
    assert registry.requests_since(mark) == []
    assert_mirror_log_clean(mirror.stderr_path)


def test_podman_pulls_imported_images(
    make_podman: PodmanFactory,
    mirror: MirrorProcess,
    registry: Registry,
    hub_images: dict[str, Image],
) -> None:
    mark = registry.mark()
    podman_pulls(make_podman(), hub_images, "pull from the inside mirror")
    registry.sync()  # every request it answered is in its log
    assert registry.requests_since(mark) == []
    assert_mirror_log_clean(mirror.stderr_path)
