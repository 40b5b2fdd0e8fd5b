"""Manifest media types, and which of them a client's Accept set takes."""

from __future__ import annotations

from collections.abc import Sequence

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
# Tags are resolved upstream with every type we can serve, so the cached digest is the one
# the richest client gets (usually an index); narrower clients are handled per request.
ALL_MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST, DOCKER_V1_SIGNED)


def accepts(accept: Sequence[str], media_type: str) -> bool:
    """Whether a media type is in the client's Accept set (absent Accept or */* takes any)."""
    if not accept:
        return True
    family = media_type.split("/", 1)[0]
    return any(item in ("*/*", media_type, f"{family}/*") for item in accept)
