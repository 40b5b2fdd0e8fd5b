"""Small pieces of the OCI distribution protocol shared by the fake hub's servers."""

from __future__ import annotations

import hashlib
import json

from aiohttp import web

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"

# What a Docker daemon asks for: one Accept line per type.
ALL_MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """An OCI error response, the body shape every registry client parses."""
    body = {"errors": [{"code": code, "message": message, "detail": None}]}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )


def accepted_types(accept_lines: tuple[str, ...]) -> set[str]:
    """All media types named by any Accept line; dockerd sends one line per type."""
    types: set[str] = set()
    for line in accept_lines:
        for item in line.split(","):
            media_type = item.split(";", 1)[0].strip()
            if media_type:
                types.add(media_type)
    return types
