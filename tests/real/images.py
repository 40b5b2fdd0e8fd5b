"""Seeded test images: built as an OCI image layout on disk, pushed to a registry with skopeo."""

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
class Push:
    """What a test needs to know about one pushed image: where it is and what it should be."""

    repo: str
    tag: str
    media_type: str
    digest: str
    is_list: bool

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.tag}"


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


# The images the tests pull. Seeds fix every byte, so digests are equal in every run.
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


def build_layout(root: Path, *, big: bool = True, multi: bool = True) -> OciLayout:
    """Build the test images into one OCI layout, tagged "big" and "multi"."""
    layout = OciLayout(root)
    if big:
        layout.tag(layout.add_image(BIG), "big")
    if multi:
        layout.tag(layout.add_index(PLATFORMS), "multi")
    return layout


# name -> (layout tag, repo, tag, extra skopeo copy args, expected media type, is a list)
PLAN: dict[str, tuple[str, str, str, tuple[str, ...], str, bool]] = {
    "oci": ("big", "test/oci", "v1", (), OCI_MANIFEST, False),
    "docker": ("big", "test/docker", "v1", ("--format", "v2s2"), DOCKER_MANIFEST, False),
    "index": ("multi", "test/index", "v1", ("--all",), OCI_INDEX, True),
    "list": ("multi", "test/list", "v1", ("--all", "--format", "v2s2"), DOCKER_LIST, True),
}


def push_all(
    skopeo: Skopeo, layout: Path, host: str, names: list[str] | None = None
) -> dict[str, Push]:
    """Push test images to `host`; return them by short name, each checked by media type."""
    pushed: dict[str, Push] = {}
    for name in names or list(PLAN):
        src_tag, repo, tag, extra, media_type, is_list = PLAN[name]
        skopeo.push(layout, src_tag, host, f"{repo}:{tag}", *extra)
        raw = skopeo.inspect_raw(host, f"{repo}:{tag}")
        actual = json.loads(raw).get("mediaType")
        if actual != media_type:
            raise RuntimeError(f"{repo}:{tag} was pushed as {actual!r}, wanted {media_type!r}")
        digest = "sha256:" + hashlib.sha256(raw).hexdigest()
        pushed[name] = Push(repo, tag, media_type, digest, is_list)
    return pushed
