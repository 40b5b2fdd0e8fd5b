"""What a manifest document points at: config, layers, child manifests, subject, v1 layers."""

from __future__ import annotations

import json

from mirror.errors import DigestInvalid
from mirror.reference import Digest


def referenced_digests(body: bytes) -> set[Digest]:
    """Every digest a manifest points at: config, layers, child manifests, v1 fsLayers."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return set()
    if not isinstance(document, dict):
        return set()
    descriptors: list[object] = [document.get("config"), document.get("subject")]
    for key in ("layers", "manifests"):
        items = document.get(key)
        if isinstance(items, list):
            descriptors.extend(items)
    found = {d.get("digest") for d in descriptors if isinstance(d, dict)}
    layers = document.get("fsLayers")
    if isinstance(layers, list):
        found |= {layer.get("blobSum") for layer in layers if isinstance(layer, dict)}
    return {digest for text in found if (digest := _digest(text)) is not None}


def _digest(value: object) -> Digest | None:
    """A digest we can use; anything else a manifest holds there is ignored."""
    if not isinstance(value, str):
        return None
    try:
        return Digest.parse(value)
    except DigestInvalid:
        return None
