"""Air-gapped CI end to end: lock and export on the connected side, import on the inside.

The connected side is a mirror process in front of the session's real docker-registry. The
inside is a fresh mirror with `offline = true` whose upstream URL is a port nothing listens
on; what skopeo pulls from it must be byte-identical to a direct pull from the registry.
"""

from __future__ import annotations

import json
import tarfile
import urllib.request
from pathlib import Path

import pytest
from support.bundles import (
    TOKEN,
    cache_state,
    inside_mirror,
    lock_and_export,
    mirror_cli,
    pull,
)
from support.mirror_process import MirrorProcesses
from support.registry import Registry
from support.skopeo import Skopeo, diff_dirs

IMAGES_TXT = """\
# what the inside network runs
alpine:3.19 --platform linux/arm64     # a Docker manifest list: one platform kept
test/oci:v1                            # a single OCI image
test/index:v1                          # an OCI index: every platform
docker.io/test/list:v1 --platform linux/amd64
"""
# (full reference in the bundle, name as pushed, skopeo's --override-arch or None for --all)
PULLS = [
    ("docker.io/library/alpine:3.19", "alpine:3.19", "arm64"),
    ("docker.io/test/oci:v1", "test/oci:v1", None),
    ("docker.io/test/index:v1", "test/index:v1", None),
    ("docker.io/test/index:v1", "test/index:v1", "arm64"),
    ("docker.io/test/list:v1", "test/list:v1", "amd64"),
]


@pytest.fixture
def bundle(
    registry: Registry, mirror_processes: MirrorProcesses, tmp_path: Path
) -> tuple[Path, Path]:
    """IMAGES_TXT locked and exported through a connected mirror: (lock, bundle.tar)."""
    return lock_and_export(mirror_processes(registry.url).url, IMAGES_TXT, tmp_path)


def test_lock_pins_each_tag_with_the_platforms_chosen(
    registry: Registry, bundle: tuple[Path, Path]
) -> None:
    lock = json.loads(bundle[0].read_text())
    images = lock["images"]
    assert sorted(images) == [
        "docker.io/library/alpine:3.19",
        "docker.io/test/index:v1",
        "docker.io/test/list:v1",
        "docker.io/test/oci:v1",
    ]
    for reference, name in [(r, n) for r, n, _ in PULLS]:
        assert images[reference]["digest"] == registry.images[name].digest
    alpine = images["docker.io/library/alpine:3.19"]
    assert [m["platform"] for m in alpine["manifests"]] == ["linux/arm64"]
    index = images["docker.io/test/index:v1"]
    assert sorted(m["platform"] for m in index["manifests"]) == ["linux/amd64", "linux/arm64"]
    oci = images["docker.io/test/oci:v1"]
    assert [m["digest"] for m in oci["manifests"]] == [registry.images["test/oci:v1"].digest]
    assert oci["size"] > sum(1 for _ in registry.images["test/oci:v1"].blobs)
    # Stable: the same set locked again is the same text but for the resolution times.
    assert bundle[0].read_text().endswith("\n")


def test_skopeo_reads_the_exported_bundle(
    registry: Registry,
    skopeo: Skopeo,
    mirror_processes: MirrorProcesses,
    bundle: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    lock, tar = bundle
    # Each blob once, though test/oci, test/index and test/list share their base layer.
    with tarfile.open(tar) as archive:
        names = archive.getnames()
    assert len(names) == len(set(names))
    shared = registry.images["test/oci:v1"].blobs & registry.images["test/list:v1"].blobs
    assert shared and all(f"blobs/sha256/{d.removeprefix('sha256:')}" in names for d in shared)
    assert (names[0], names[-1]) == ("oci-layout", "index.json")
    layout = tmp_path / "layout"
    layout.mkdir()
    outside = mirror_processes(registry.url)
    run = mirror_cli("export", "--lock", str(lock), "-o", str(layout), "--server", outside.url)
    assert run.returncode == 0, run.stderr
    for n, (reference, name, arch) in enumerate(PULLS):
        direct = pull(
            skopeo,
            f"docker://{registry.host}/{registry.images[name].ref}",
            tmp_path / f"d{n}",
            arch,
        )
        got = pull(skopeo, f"oci:{layout}:{reference}", tmp_path / f"l{n}", arch)
        assert not diff_dirs(direct, got), (reference, arch, diff_dirs(direct, got))
        got = pull(skopeo, f"oci-archive:{tar}:{reference}", tmp_path / f"b{n}", arch)
        assert not diff_dirs(direct, got), (reference, arch, diff_dirs(direct, got))


def test_inside_mirror_serves_the_imported_bundle_with_no_upstream(
    registry: Registry,
    skopeo: Skopeo,
    mirror_processes: MirrorProcesses,
    bundle: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    lock, tar = bundle
    inside = inside_mirror(mirror_processes, tmp_path)
    run = mirror_cli("import", str(tar), "--server", inside.url, token=TOKEN)
    assert run.returncode == 0, run.stderr
    report = run.json()
    assert sorted(report["images"]) == sorted({r for r, _, _ in PULLS})
    assert report["blobs_added"] == report["blobs"] > 0

    for n, (_, name, arch) in enumerate(PULLS):
        direct = pull(
            skopeo,
            f"docker://{registry.host}/{registry.images[name].ref}",
            tmp_path / f"d{n}",
            arch,
        )
        got = pull(skopeo, f"docker://{inside.host}/{name}", tmp_path / f"i{n}", arch)
        assert not diff_dirs(direct, got), (name, arch, diff_dirs(direct, got))
    # A platform that was not locked is not there (and nothing is asked upstream for it).
    with pytest.raises(RuntimeError):
        pull(skopeo, f"docker://{inside.host}/alpine:3.19", tmp_path / "amd64", "amd64")

    run = mirror_cli("verify", "--lock", str(lock), "--server", inside.url, token=TOKEN)
    assert run.returncode == 0, run.stderr
    assert run.json()["missing"] == []

    # One blob gone (row and file, through the admin API): verify names it.
    gone = sorted(registry.images["test/oci:v1"].blobs)[0]
    request = urllib.request.Request(f"{inside.url}/admin/blobs/{gone}", method="DELETE")
    request.add_header("Authorization", f"Bearer {TOKEN}")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    run = mirror_cli("verify", "--lock", str(lock), "--server", inside.url, token=TOKEN)
    assert run.returncode == 1
    assert f"docker.io/test/oci:v1: blob {gone} missing" in run.stderr


def test_import_into_a_stopped_data_folder(
    registry: Registry,
    skopeo: Skopeo,
    mirror_processes: MirrorProcesses,
    bundle: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    lock, tar = bundle
    inside = inside_mirror(mirror_processes, tmp_path)
    inside.stop()
    config = str(inside.config_path)
    run = mirror_cli("import", "--config", config, str(tar))
    assert run.returncode == 0, run.stderr
    run = mirror_cli("verify", "--lock", str(lock), "--config", config)
    assert run.returncode == 0, run.stderr
    # Importing the same bundle again adds nothing and changes nothing.
    before = cache_state(inside.data)
    run = mirror_cli("import", "--config", config, str(tar))
    assert run.returncode == 0, run.stderr
    assert run.json()["blobs_added"] == 0
    assert cache_state(inside.data) == before

    inside.start()
    for n, (_, name, arch) in enumerate(PULLS):
        direct = pull(
            skopeo,
            f"docker://{registry.host}/{registry.images[name].ref}",
            tmp_path / f"d{n}",
            arch,
        )
        got = pull(skopeo, f"docker://{inside.host}/{name}", tmp_path / f"i{n}", arch)
        assert not diff_dirs(direct, got), (name, arch, diff_dirs(direct, got))


def test_an_imported_tag_older_than_its_ttl_is_served_offline_without_warning(
    registry: Registry,
    mirror_processes: MirrorProcesses,
    bundle: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    lock, _ = bundle
    # The lock as if resolved years ago: the import records that age; offline, it is served.
    old = json.loads(lock.read_text())
    for entry in old["images"].values():
        entry["resolvedAt"] = "2020-01-01T00:00:00Z"
    lock.write_text(json.dumps(old))
    outside = mirror_processes(registry.url)
    tar = tmp_path / "old.tar"
    run = mirror_cli("export", "--lock", str(lock), "-o", str(tar), "--server", outside.url)
    assert run.returncode == 0, run.stderr
    inside = inside_mirror(mirror_processes, tmp_path)
    run = mirror_cli("import", str(tar), "--server", inside.url, token=TOKEN)
    assert run.returncode == 0, run.stderr

    request = urllib.request.Request(
        f"{inside.url}/v2/test/oci/manifests/v1",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert response.headers["Docker-Content-Digest"] == registry.images["test/oci:v1"].digest
        assert response.headers["Warning"] is None
