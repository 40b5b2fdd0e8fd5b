"""What the fake hub holds: blobs, manifests and tags, kept per repository like a registry."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from .oci import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    sha256_digest,
)


@dataclass(frozen=True, slots=True)
class FakeImage:
    repo: str
    tag: str
    manifest_digest: str
    manifest_bytes: bytes
    media_type: str
    config_digest: str
    layer_digests: tuple[str, ...]
    layers: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class StoredManifest:
    body: bytes
    media_type: str


@dataclass(slots=True)
class Repository:
    blobs: set[str] = field(default_factory=set)
    manifests: dict[str, StoredManifest] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class Content:
    """Per-repository content: a blob added under one repository is unknown to the others."""

    def __init__(self) -> None:
        self.repos: dict[str, Repository] = {}
        # Bytes are stored once by digest: the CDN serves by digest alone, as Docker Hub's does.
        self.blob_bytes: dict[str, bytes] = {}

    def repo(self, name: str) -> Repository:
        return self.repos.setdefault(name, Repository())

    def add_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        self.blob_bytes[digest] = data
        self.repo(repo).blobs.add(digest)
        return digest

    def add_manifest(self, repo: str, body: bytes, media_type: str, tag: str | None) -> str:
        digest = sha256_digest(body)
        self.repo(repo).manifests[digest] = StoredManifest(body, media_type)
        if tag is not None:
            self.set_tag(repo, tag, digest)
        return digest

    def set_tag(self, repo: str, tag: str, digest: str) -> None:
        if digest not in self.repo(repo).manifests:
            raise KeyError(f"{repo} has no manifest {digest}")
        self.repo(repo).tags[tag] = digest

    def delete_tag(self, repo: str, tag: str) -> None:
        del self.repo(repo).tags[tag]

    def add_image(self, repo: str, tag: str, layers: list[bytes], media_type: str) -> FakeImage:
        docker = media_type == DOCKER_MANIFEST
        if not docker and media_type != OCI_MANIFEST:
            raise ValueError(f"not an image manifest type: {media_type}")
        layer_digests = tuple(self.add_blob(repo, layer) for layer in layers)
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": list(layer_digests)},
                # The tag makes each image's config, hence its digest, distinct.
                "config": {"Labels": {"fake.tag": f"{repo}:{tag}"}},
            },
            sort_keys=True,
        ).encode()
        config_digest = self.add_blob(repo, config)
        layer_type = DOCKER_LAYER if docker else OCI_LAYER
        manifest = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "config": _descriptor(DOCKER_CONFIG if docker else OCI_CONFIG, config),
            "layers": [_descriptor(layer_type, layer) for layer in layers],
        }
        body = json.dumps(manifest, indent=3).encode()
        digest = self.add_manifest(repo, body, media_type, tag)
        return FakeImage(
            repo=repo,
            tag=tag,
            manifest_digest=digest,
            manifest_bytes=body,
            media_type=media_type,
            config_digest=config_digest,
            layer_digests=layer_digests,
            layers=tuple(layers),
        )

    def add_index(self, repo: str, tag: str, images: list[FakeImage], media_type: str) -> str:
        for image in images:
            # Children must be fetchable by digest under the index's repository.
            self.repo(repo).manifests[image.manifest_digest] = StoredManifest(
                image.manifest_bytes, image.media_type
            )
        index = {
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {
                    "mediaType": image.media_type,
                    "digest": image.manifest_digest,
                    "size": len(image.manifest_bytes),
                    "platform": {"architecture": arch, "os": "linux"},
                }
                for image, arch in zip(images, _ARCHES, strict=False)
            ],
        }
        return self.add_manifest(repo, json.dumps(index, indent=3).encode(), media_type, tag)


_ARCHES = ("amd64", "arm64", "ppc64le", "s390x", "riscv64", "386")


def _descriptor(media_type: str, data: bytes) -> dict[str, object]:
    return {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}


def make_blob(size: int, seed: int) -> bytes:
    """Deterministic bytes that do not compress: a stand-in for a gzipped layer."""
    return random.Random(seed).randbytes(size)


__all__ = ["OCI_INDEX", "Content", "FakeImage", "StoredManifest", "make_blob"]
