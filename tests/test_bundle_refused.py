"""A damaged bundle is refused, naming the digest at fault, and the cache is left as it was;
a layout skopeo made imports like an exported one."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.bundles import (
    TOKEN,
    cache_state,
    inside_mirror,
    largest_blob,
    lock_and_export,
    mirror_cli,
    pull,
)
from support.mirror_process import MirrorProcess, MirrorProcesses
from support.registry import Registry
from support.skopeo import Skopeo, diff_dirs

FIRST = "test/oci:v1\n"  # imported first: the refused bundles must not disturb it
SECOND = "test/index:v1\nalpine:3.19 --platform linux/amd64\n"


@pytest.fixture
def outside(registry: Registry, mirror_processes: MirrorProcesses) -> MirrorProcess:
    return mirror_processes(registry.url)


def flipped(tar: Path, dest: Path) -> tuple[Path, str]:
    """A copy of the bundle with one byte of its largest blob changed; that blob's digest."""
    digest, offset, size = largest_blob(tar)
    data = bytearray(tar.read_bytes())
    data[offset + size // 2] ^= 0x01
    dest.write_bytes(bytes(data))
    return dest, digest


def truncated(tar: Path, dest: Path) -> tuple[Path, str]:
    """A copy of the bundle cut in the middle of its largest blob; that blob's digest."""
    digest, offset, size = largest_blob(tar)
    dest.write_bytes(tar.read_bytes()[: offset + size // 2])
    return dest, digest


@pytest.mark.parametrize("damage", [flipped, truncated], ids=["flipped-byte", "truncated"])
@pytest.mark.parametrize("through", ["admin-api", "data-folder"])
def test_a_damaged_bundle_is_refused_and_changes_nothing(
    outside: MirrorProcess,
    mirror_processes: MirrorProcesses,
    tmp_path: Path,
    damage: object,
    through: str,
) -> None:
    _, first = lock_and_export(outside.url, FIRST, tmp_path / "first")
    _, second = lock_and_export(outside.url, SECOND, tmp_path / "second")
    assert callable(damage)
    bad, digest = damage(second, tmp_path / "bad.tar")
    inside = inside_mirror(mirror_processes, tmp_path)
    run = mirror_cli("import", str(first), "--server", inside.url, token=TOKEN)
    assert run.returncode == 0, run.stderr
    if through == "admin-api":
        target = ["--server", inside.url]
    else:
        inside.stop()
        target = ["--config", str(inside.config_path)]
    before = cache_state(inside.data)

    run = mirror_cli("import", str(bad), *target, token=TOKEN)
    assert run.returncode == 1, run.stdout
    assert f"blob {digest}" in run.stderr, run.stderr
    assert cache_state(inside.data) == before

    # The undamaged bundle goes in afterwards: nothing of the refused one is in the way.
    run = mirror_cli("import", str(second), *target, token=TOKEN)
    assert run.returncode == 0, run.stderr
    assert run.json()["blobs_added"] > 0


def test_a_layout_made_by_skopeo_imports(
    registry: Registry,
    skopeo: Skopeo,
    mirror_processes: MirrorProcesses,
    tmp_path: Path,
) -> None:
    layout = tmp_path / "layout"
    for name in ("test/index:v1", "test/oci:v1"):
        source = f"docker://{registry.host}/{registry.images[name].ref}"
        skopeo.run(
            "copy", "--all", "--quiet", "--src-tls-verify=false", "--src-no-creds",
            source, f"oci:{layout}:docker.io/{name}",
        )  # fmt: skip
    inside = inside_mirror(mirror_processes, tmp_path)
    run = mirror_cli("import", str(layout), "--server", inside.url, token=TOKEN)
    assert run.returncode == 0, run.stderr
    assert sorted(run.json()["images"]) == ["docker.io/test/index:v1", "docker.io/test/oci:v1"]

    for n, (name, arch) in enumerate([("test/index:v1", None), ("test/oci:v1", "amd64")]):
        ref = registry.images[name].ref
        direct = pull(skopeo, f"docker://{registry.host}/{ref}", tmp_path / f"d{n}", arch)
        got = pull(skopeo, f"docker://{inside.host}/{name}", tmp_path / f"i{n}", arch)
        assert not diff_dirs(direct, got), (name, diff_dirs(direct, got))
