"""The real upstream holds what the pull tests expect: media types, platforms, pullable blobs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from support.images import DOCKER_MANIFEST, OCI_MANIFEST, Image
from support.registry import Registry, count
from support.skopeo import Skopeo, dir_files

from .conftest import DirectPulls, PullSpec

CHILD_TYPE = {"index": OCI_MANIFEST, "list": DOCKER_MANIFEST}


@pytest.mark.parametrize("name", ["oci", "docker", "index", "list"])
def test_pushed_media_types(
    name: str, images: dict[str, Image], registry: Registry, skopeo: Skopeo
) -> None:
    push = images[name]
    raw = skopeo.inspect_raw(registry.host, push.ref)
    doc = json.loads(raw)
    assert doc["mediaType"] == push.media_type
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == push.digest
    if push.is_list:
        platforms = {(m["platform"]["os"], m["platform"]["architecture"]) for m in doc["manifests"]}
        assert platforms == {("linux", "amd64"), ("linux", "arm64")}
        assert {m["mediaType"] for m in doc["manifests"]} == {CHILD_TYPE[name]}
    else:
        sizes = sorted(layer["size"] for layer in doc["layers"])
        assert len(sizes) == 3
        assert sizes[-1] >= 50 * 1024 * 1024


@pytest.mark.parametrize("name", ["oci", "docker", "index", "list"])
def test_direct_pull_is_complete(name: str, images: dict[str, Image], direct: DirectPulls) -> None:
    """A direct pull by tag gives the pushed manifest and every blob, each matching its digest."""
    push = images[name]
    dest = direct.get(PullSpec("tag", push.ref, all_platforms=push.is_list))
    files = dir_files(dest)
    assert hashlib.sha256(files["manifest.json"].read_bytes()).hexdigest() == push.digest[7:]
    manifests = [files["manifest.json"]]
    if push.is_list:
        children = json.loads(files["manifest.json"].read_bytes())["manifests"]
        manifests = [files[f"{c['digest'][7:]}.manifest.json"] for c in children]
    for path in manifests:
        doc = json.loads(path.read_bytes())
        for desc in [doc["config"], *doc["layers"]]:
            blob = files[desc["digest"][7:]].read_bytes()
            assert len(blob) == desc["size"]
            assert hashlib.sha256(blob).hexdigest() == desc["digest"][7:]


def test_registry_log_counts_requests(
    images: dict[str, Image], registry: Registry, skopeo: Skopeo, tmp_path: Path
) -> None:
    """The upstream-side counter the mirror tests rely on sees exactly what a client asked."""
    push = images["oci"]
    mark = registry.mark()
    access_before = registry.access_count()
    skopeo.pull(registry.host, push.ref, tmp_path / "pull")
    seen = registry.requests_since(mark)
    counts = count(seen)
    assert counts[("GET", "blob")] == 4, seen  # config + 3 layers
    assert counts[("GET", "manifest")] + counts[("HEAD", "manifest")] >= 1, seen
    assert all(r.status == 200 for r in seen), seen
    assert registry.access_count() - access_before == len(seen)
