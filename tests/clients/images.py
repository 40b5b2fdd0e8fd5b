"""Small seeded test images for the client daemons, pushed under Docker Hub names.

`registry-mirrors` (dockerd), hosts.toml (containerd) and registries.conf (podman) apply to
Docker Hub names only, so the images are pushed to the upstream under the names a client pulls:
`alpine:3.19` is `docker.io/library/alpine:3.19`, `test/oci:v1` is `docker.io/test/oci:v1`.
Each is a few hundred KB, so a daemon pulls it in a second or two.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from real.images import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageSpec,
    LayerSpec,
    OciLayout,
)
from real.skopeo import Skopeo

_SHARED = LayerSpec(seed=500, files=(("base/shared.bin", 120_000),))
SINGLE = ImageSpec(
    layers=(_SHARED, LayerSpec(seed=501, files=(("app/single.bin", 90_000), ("app/x", 10)))),
)
MULTI = [
    ImageSpec(layers=(_SHARED, LayerSpec(seed=511, files=(("app/amd64.bin", 80_000),)))),
    ImageSpec(
        layers=(_SHARED, LayerSpec(seed=512, files=(("app/arm64.bin", 85_000),))),
        architecture="arm64",
    ),
]
# Shaped like the real alpine: a Docker manifest list for two platforms.
ALPINE = [
    ImageSpec(layers=(LayerSpec(seed=521, files=(("bin/busybox", 300_000),)),)),
    ImageSpec(
        layers=(LayerSpec(seed=522, files=(("bin/busybox", 310_000),)),), architecture="arm64"
    ),
]


@dataclass(frozen=True, slots=True)
class HubImage:
    """One image as a client names it, and what the upstream holds for it."""

    name: str  # as the client pulls it: "alpine:3.19", "test/oci:v1"
    repo: str  # as the registry holds it: "library/alpine"
    tag: str
    media_type: str  # of the tag's manifest
    digest: str  # of the tag's manifest (what RepoDigests / ctr / podman report)
    platform_digest: str  # of the linux/amd64 image manifest (= digest for a single image)
    config: str  # digest of the linux/amd64 image's config (dockerd's and podman's image ID)
    blobs: frozenset[str]  # config and layers of the linux/amd64 image

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"

    @property
    def docker_io(self) -> str:
        """The fully qualified name: docker.io/library/alpine:3.19."""
        return f"docker.io/{self.repo}:{self.tag}"


# name -> (layout tag, repo, tag, extra skopeo copy args, media type)
PLAN: dict[str, tuple[str, str, str, tuple[str, ...], str]] = {
    "alpine:3.19": ("alpine", "library/alpine", "3.19", ("--all", "--format", "v2s2"), DOCKER_LIST),
    "test/oci:v1": ("single", "test/oci", "v1", (), OCI_MANIFEST),
    "test/docker:v1": ("single", "test/docker", "v1", ("--format", "v2s2"), DOCKER_MANIFEST),
    "test/index:v1": ("multi", "test/index", "v1", ("--all",), OCI_INDEX),
    "test/list:v1": ("multi", "test/list", "v1", ("--all", "--format", "v2s2"), DOCKER_LIST),
}


def build_layout(root: Path) -> Path:
    layout = OciLayout(root)
    layout.tag(layout.add_image(SINGLE), "single")
    layout.tag(layout.add_index(MULTI), "multi")
    layout.tag(layout.add_index(ALPINE), "alpine")
    return root


def _describe(skopeo: Skopeo, host: str, name: str, push: tuple[str, str, str]) -> HubImage:
    repo, tag, media_type = push
    raw = skopeo.inspect_raw(host, f"{repo}:{tag}")
    doc = json.loads(raw)
    if doc.get("mediaType") != media_type:
        raise RuntimeError(f"{repo}:{tag} was pushed as {doc.get('mediaType')!r}")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    platform_digest = digest
    if "manifests" in doc:
        amd64 = [m for m in doc["manifests"] if m["platform"]["architecture"] == "amd64"]
        platform_digest = amd64[0]["digest"]
        doc = json.loads(skopeo.inspect_raw(host, f"{repo}@{platform_digest}"))
    blobs = frozenset([doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])])
    config = doc["config"]["digest"]
    return HubImage(name, repo, tag, media_type, digest, platform_digest, config, blobs)


def push_hub_images(skopeo: Skopeo, layout: Path, host: str) -> dict[str, HubImage]:
    """Push every image of PLAN to the registry at host; return them by client name."""
    pushed: dict[str, HubImage] = {}
    for name, (src, repo, tag, extra, media_type) in PLAN.items():
        skopeo.push(layout, src, host, f"{repo}:{tag}", *extra)
        pushed[name] = _describe(skopeo, host, name, (repo, tag, media_type))
    return pushed
