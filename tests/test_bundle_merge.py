"""An import merges: what the cache holds stays, and of two resolutions of one tag the newer
one wins, whichever arrives first."""

from __future__ import annotations

import io
import json
import sqlite3
import tarfile
from pathlib import Path

from support.bundles import inside_mirror, lock_and_export, mirror_cli
from support.mirror_process import MirrorProcesses
from support.registry import Registry


def renamed(bundle: Path, dest: Path, old: str, new: str, resolved_at: str) -> Path:
    """The bundle with one image renamed `new` in index.json (in place of the image that had
    that name), resolved at `resolved_at`."""
    with tarfile.open(bundle) as source, tarfile.open(dest, "w") as out:
        for member in source.getmembers():
            data = source.extractfile(member)
            assert data is not None
            content = data.read()
            if member.name == "index.json":
                index = json.loads(content)
                index["manifests"] = [  # the image that held the new name is left out
                    entry
                    for entry in index["manifests"]
                    if entry["annotations"]["org.opencontainers.image.ref.name"] != new
                ]
                for entry in index["manifests"]:
                    annotations = entry["annotations"]
                    if annotations["org.opencontainers.image.ref.name"] == old:
                        annotations["org.opencontainers.image.ref.name"] = new
                        annotations["mirror.resolved-at"] = resolved_at
                content = json.dumps(index).encode()
                member.size = len(content)
            out.addfile(member, io.BytesIO(content))
    return dest


def tag_digest(data: Path, repo: str, tag: str) -> str:
    db = sqlite3.connect(data / "mirror.db")
    try:
        rows = db.execute("SELECT digest FROM tags WHERE repo = ? AND tag = ?", (repo, tag))
        return str(rows.fetchone()[0])
    finally:
        db.close()


def test_the_newer_resolution_of_a_tag_wins(
    registry: Registry, mirror_processes: MirrorProcesses, tmp_path: Path
) -> None:
    outside = mirror_processes(registry.url)
    _, bundle = lock_and_export(outside.url, "test/oci:v1\ntest/index:v1\n", tmp_path / "a")
    inside = inside_mirror(mirror_processes, tmp_path)
    inside.stop()
    config = ["--config", str(inside.config_path)]
    assert mirror_cli("import", *config, str(bundle)).returncode == 0
    oci, index = registry.images["test/oci:v1"].digest, registry.images["test/index:v1"].digest
    assert tag_digest(inside.data, "test/oci", "v1") == oci

    # A bundle that says test/oci:v1 was the index, resolved in 2020: older, so not taken.
    older = renamed(
        bundle, tmp_path / "older.tar", "docker.io/test/index:v1", "docker.io/test/oci:v1",
        "2020-01-01T00:00:00Z",
    )  # fmt: skip
    run = mirror_cli("import", *config, str(older))
    assert run.returncode == 0, run.stderr
    assert run.json()["kept_newer"] == ["docker.io/test/oci:v1"]
    assert tag_digest(inside.data, "test/oci", "v1") == oci

    # The same, resolved later than the cache's: it moves the tag.
    newer = renamed(
        bundle, tmp_path / "newer.tar", "docker.io/test/index:v1", "docker.io/test/oci:v1",
        "2100-01-01T00:00:00Z",
    )  # fmt: skip
    run = mirror_cli("import", *config, str(newer))
    assert run.returncode == 0, run.stderr
    assert run.json()["kept_newer"] == []
    assert tag_digest(inside.data, "test/oci", "v1") == index
