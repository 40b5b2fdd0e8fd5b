"""Purging one of two images that share a base layer, with a real upstream and a real client.

`test/oci:v1` and `test/index:v1` (support/images.py: an image, and an index for amd64 and arm64)
share their base layer. Both are pulled through a mirror process with skopeo; purging the index's
repository frees exactly what the dry run announced (bytes under the data folder's blob store),
keeps the shared layer, and the other image still pulls byte-identical from the cache without a
single blob GET upstream (the registry's own log counts).
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from support.mirror_process import MirrorProcesses
from support.registry import Registry, count
from support.skopeo import Skopeo, diff_dirs

from .conftest import DirectPulls, PullSpec

TOKEN = "purge-real-token-0123456789abcdef"
KEPT, PURGED = "test/oci:v1", "test/index:v1"


def blob_store_bytes(data: Path) -> int:
    return sum(path.stat().st_size for path in (data / "blobs").rglob("*") if path.is_file())


def stored_digests(data: Path) -> set[str]:
    return {
        f"{path.parent.parent.name}:{path.name}"
        for path in (data / "blobs").rglob("*")
        if path.is_file()
    }


def purge(url: str, repo: str, dry_run: bool) -> dict[str, Any]:
    query = "?dry_run=1" if dry_run else ""
    request = urllib.request.Request(
        f"{url}/admin/cache/{repo}{query}",
        method="DELETE",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert isinstance(answer, dict)
    return answer


def test_purging_one_of_two_images_frees_its_own_layers_only(
    registry: Registry,
    mirror_processes: MirrorProcesses,
    skopeo: Skopeo,
    direct: DirectPulls,
    tmp_path: Path,
) -> None:
    kept, purged = registry.images[KEPT], registry.images[PURGED]
    shared = kept.blobs & purged.blobs
    assert shared, "the two test images must share a base layer"
    data = tmp_path / "mirror-data"
    mirror = mirror_processes(
        config={
            "storage": {"path": str(data)},
            "admin": {"token": TOKEN},
            "upstreams": [{"name": "docker.io", "url": registry.url}],
        }
    )
    specs = {image.name: PullSpec(image.name, image.ref) for image in (kept, purged)}
    for name, spec in specs.items():
        expected = direct.get(spec)
        via_mirror = skopeo.pull(mirror.host, spec.ref, tmp_path / f"first-{name}")
        assert diff_dirs(expected, via_mirror) == []
    before = blob_store_bytes(data)
    assert stored_digests(data) == kept.blobs | purged.blobs

    dry = purge(mirror.url, purged.repo, dry_run=True)
    assert blob_store_bytes(data) == before  # a dry run removes nothing
    own = purged.blobs - shared
    assert dry["digests"] == {
        "manifests": sorted([purged.digest, purged.platform_digest]),  # the index, amd64's
        "blobs": sorted(own),
    }
    assert (dry["tags"], dry["manifests"], dry["blobs"]) == (1, 2, len(own))

    real = purge(mirror.url, purged.repo, dry_run=False)
    assert real == {**dry, "dry_run": False}
    after = blob_store_bytes(data)
    freed = before - after
    assert freed == real["bytes"], (before, after, real)
    assert stored_digests(data) == kept.blobs  # the shared base layer stayed

    mark = registry.mark()
    again = skopeo.pull(mirror.host, kept.ref, tmp_path / "after-purge")
    assert diff_dirs(direct.get(specs[KEPT]), again) == []
    seen = count(registry.requests_since(mark))
    assert seen[("GET", "blob")] == 0, seen
    assert sum(seen.values()) == 0, seen  # within the tag TTL: nothing asked upstream at all

    mark = registry.mark()
    back = skopeo.pull(mirror.host, purged.ref, tmp_path / "purged-again")
    assert diff_dirs(direct.get(specs[PURGED]), back) == []
    refetched = count(registry.requests_since(mark))
    assert refetched[("GET", "blob")] == len(own), refetched  # never the shared layer
    print(
        "\nPURGE FIGURES",
        json.dumps(
            {
                "dry_run": dry,
                "blob_store_bytes_before": before,
                "blob_store_bytes_after": after,
                "bytes_freed": freed,
                f"upstream requests pulling {KEPT} after the purge": dict(seen),
                f"upstream requests pulling {PURGED} after the purge": {
                    f"{method} {kind}": n for (method, kind), n in refetched.items()
                },
            },
            indent=1,
        ),
    )
