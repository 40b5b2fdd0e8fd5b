"""Seeded test images: built as one OCI image layout on disk, pushed to a registry with skopeo.

Two sets share the session's registry: the skopeo suite's (tests/real: a 50 MB layer, each
format, under `big/` and `multi/`) and the real clients' (tests/clients: a few hundred KB each,
under the Docker Hub names a daemon pulls). Seeds fix every byte, so digests are equal in every
run.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .skopeo import Skopeo

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"

MiB = 1024 * 1024
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True, slots=True)
class LayerSpec:
    """A layer of `files` random files: (path in the tar, size in bytes)."""

    seed: int
    files: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """One single-platform image."""

    layers: tuple[LayerSpec, ...]
    architecture: str = "amd64"
    os: str = "linux"


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int

    def as_json(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True, slots=True)
class Image:
    """One pushed image: where it is, what it is, and what a client pulling it must fetch."""

    name: str  # the key in PLAN: "oci", or as a client pulls it: "alpine:3.19"
    repo: str  # as the registry holds it: "library/alpine"
    tag: str
    media_type: str  # of the tag's manifest
    digest: str  # of the tag's manifest (what RepoDigests / ctr / podman report)
    platform_digest: str  # of the linux/amd64 image manifest (= digest for a single image)
    config: str  # digest of the linux/amd64 image's config (dockerd's and podman's image ID)
    blobs: frozenset[str]  # config and layers of the linux/amd64 image

    @property
    def is_list(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_LIST)

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"

    @property
    def docker_io(self) -> str:
        """The fully qualified name: docker.io/library/alpine:3.19."""
        return f"docker.io/{self.repo}:{self.tag}"


class OciLayout:
    """Writes an OCI image layout (oci-layout, index.json, blobs/sha256/<hex>) under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)
        (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self._refs: list[dict[str, object]] = []

    def add_blob(self, data: bytes, media_type: str) -> Descriptor:
        hexdigest = hashlib.sha256(data).hexdigest()
        path = self.blobs / hexdigest
        if not path.exists():
            path.write_bytes(data)
        return Descriptor(media_type, f"sha256:{hexdigest}", len(data))

    def add_json(self, doc: Mapping[str, object], media_type: str) -> Descriptor:
        return self.add_blob(json.dumps(doc, separators=(",", ":")).encode(), media_type)

    def add_layer(self, spec: LayerSpec) -> tuple[Descriptor, str]:
        """Add one gzip layer; return its descriptor and its diff ID (digest of the plain tar)."""
        tar = layer_tar(spec)
        # Random bytes do not compress: level 0 (stored blocks) keeps the build fast.
        level = 0 if len(tar) > 4 * MiB else 1
        compressed = gzip.compress(tar, compresslevel=level, mtime=0)
        desc = self.add_blob(compressed, OCI_LAYER_GZIP)
        return desc, "sha256:" + hashlib.sha256(tar).hexdigest()

    def add_image(self, spec: ImageSpec) -> Descriptor:
        layers: list[Descriptor] = []
        diff_ids: list[str] = []
        for layer_spec in spec.layers:
            desc, diff_id = self.add_layer(layer_spec)
            layers.append(desc)
            diff_ids.append(diff_id)
        config = {
            "architecture": spec.architecture,
            "os": spec.os,
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/bin/true"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
        config_desc = self.add_json(config, OCI_CONFIG)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config_desc.as_json(),
            "layers": [d.as_json() for d in layers],
        }
        return self.add_json(manifest, OCI_MANIFEST)

    def add_index(self, images: list[ImageSpec]) -> Descriptor:
        entries: list[dict[str, object]] = []
        for spec in images:
            entry = self.add_image(spec).as_json()
            entry["platform"] = {"architecture": spec.architecture, "os": spec.os}
            entries.append(entry)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        return self.add_json(index, OCI_INDEX)

    def tag(self, desc: Descriptor, name: str) -> None:
        entry = desc.as_json()
        entry["annotations"] = {REF_NAME: name}
        self._refs.append(entry)
        index = {"schemaVersion": 2, "manifests": self._refs}
        (self.root / "index.json").write_text(json.dumps(index, indent=1))


def layer_tar(spec: LayerSpec) -> bytes:
    """A deterministic tar of random files drawn from random.Random(spec.seed)."""
    rng = random.Random(spec.seed)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p, _ in spec.files} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, size in spec.files:
            info = tarfile.TarInfo(path)
            info.size = size
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(rng.randbytes(size)))
    return buf.getvalue()


# The skopeo suite's images (tests/real).
BIG = ImageSpec(
    layers=(
        LayerSpec(seed=101, files=(("etc/small.txt", 4096), ("etc/tiny.txt", 100))),
        LayerSpec(seed=102, files=(("opt/big/random.bin", 52 * MiB),)),
        LayerSpec(seed=103, files=(("usr/lib/a.bin", 1 * MiB), ("usr/lib/b.bin", 300_000))),
    )
)
_BASE = LayerSpec(seed=200, files=(("base/shared.bin", 200_000),))
PLATFORMS = [
    ImageSpec(layers=(_BASE, LayerSpec(seed=201, files=(("app/amd64.bin", 150_000),)))),
    ImageSpec(
        layers=(_BASE, LayerSpec(seed=202, files=(("app/arm64.bin", 170_000),))),
        architecture="arm64",
    ),
]

# The real clients' images (tests/clients): a daemon pulls each in a second or two.
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


def build_layout(root: Path) -> Path:
    """Every test image in one OCI layout, tagged with the layout tags PLAN names."""
    layout = OciLayout(root)
    layout.tag(layout.add_image(BIG), "big")
    layout.tag(layout.add_index(PLATFORMS), "platforms")
    layout.tag(layout.add_image(SINGLE), "single")
    layout.tag(layout.add_index(MULTI), "multi")
    layout.tag(layout.add_index(ALPINE), "alpine")
    return root


# name -> (layout tag, repo, tag, extra skopeo copy args, media type of the tag's manifest)
PLAN: dict[str, tuple[str, str, str, tuple[str, ...], str]] = {
    # tests/real
    "oci": ("big", "big/oci", "v1", (), OCI_MANIFEST),
    "docker": ("big", "big/docker", "v1", ("--format", "v2s2"), DOCKER_MANIFEST),
    "index": ("platforms", "multi/index", "v1", ("--all",), OCI_INDEX),
    "list": ("platforms", "multi/list", "v1", ("--all", "--format", "v2s2"), DOCKER_LIST),
    # tests/clients (and tests/auth): Docker Hub names, as a client pulls them
    "alpine:3.19": ("alpine", "library/alpine", "3.19", ("--all", "--format", "v2s2"), DOCKER_LIST),
    "test/oci:v1": ("single", "test/oci", "v1", (), OCI_MANIFEST),
    "test/docker:v1": ("single", "test/docker", "v1", ("--format", "v2s2"), DOCKER_MANIFEST),
    "test/index:v1": ("multi", "test/index", "v1", ("--all",), OCI_INDEX),
    "test/list:v1": ("multi", "test/list", "v1", ("--all", "--format", "v2s2"), DOCKER_LIST),
}
SKOPEO_SET = ["oci", "docker", "index", "list"]
CLIENT_SET = ["alpine:3.19", "test/oci:v1", "test/docker:v1", "test/index:v1", "test/list:v1"]


def _describe(skopeo: Skopeo, host: str, name: str, creds: tuple[str, str] | None = None) -> Image:
    _, repo, tag, _, media_type = PLAN[name]
    raw = skopeo.inspect_raw(host, f"{repo}:{tag}", creds=creds)
    doc = json.loads(raw)
    if doc.get("mediaType") != media_type:
        raise RuntimeError(f"{repo}:{tag} was pushed as {doc.get('mediaType')!r}")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    platform_digest = digest
    if "manifests" in doc:
        amd64 = [m for m in doc["manifests"] if m["platform"]["architecture"] == "amd64"]
        platform_digest = amd64[0]["digest"]
        doc = json.loads(skopeo.inspect_raw(host, f"{repo}@{platform_digest}", creds=creds))
    config = doc["config"]["digest"]
    blobs = frozenset([config, *(layer["digest"] for layer in doc["layers"])])
    return Image(name, repo, tag, media_type, digest, platform_digest, config, blobs)


def push_images(
    skopeo: Skopeo,
    layout: Path,
    host: str,
    names: list[str] | None = None,
    *,
    creds: tuple[str, str] | None = None,
) -> dict[str, Image]:
    """Push images of PLAN (all by default) to the registry at host; return them by name."""
    pushed: dict[str, Image] = {}
    for name in names or list(PLAN):
        src, repo, tag, extra, _ = PLAN[name]
        skopeo.push(layout, src, host, f"{repo}:{tag}", *extra, creds=creds)
        pushed[name] = _describe(skopeo, host, name, creds)
    return pushed
