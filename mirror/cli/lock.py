"""`mirror lock images.txt -o images.lock`: resolve each chosen tag through a running mirror.

Each tag is resolved by the mirror as a client's pull would (so it is cached there too), and
pinned: the digest it points at, the platforms kept from an index with their manifests, and
the bytes each platform weighs. Nothing is written unless every image resolved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from mirror.cli.image_sets import ChosenImage
from mirror.cli.registry_client import Manifest, RegistryClient
from mirror.cli.warm import platform_of, wanted
from mirror.errors import OperationError
from mirror.upkeep.lockfile import LockedImage, LockedManifest


def image_bytes(manifest: Manifest) -> int:
    """An image manifest's weight: itself, its config and its layers, as it announces them."""
    document = manifest.document()
    parts = [document.get("config"), *(document.get("layers") or [])]
    sizes = [part.get("size") for part in parts if isinstance(part, dict)]
    return len(manifest.body) + sum(size for size in sizes if isinstance(size, int))


def lock_image(client: RegistryClient, image: ChosenImage, now: float) -> LockedImage:
    top = client.manifest(image.reference, image.reference.pinned)
    document = top.document()
    children = document.get("manifests")
    kept: tuple[LockedManifest, ...]
    if not isinstance(children, list):
        kept = (LockedManifest(top.digest, top.media_type, None, image_bytes(top)),)
    else:
        chosen = [c for c in children if isinstance(c, dict) and isinstance(c.get("digest"), str)]
        chosen = [c for c in chosen if wanted(platform_of(c), image.platforms)]
        if not chosen:
            raise OperationError(f"{image.source}: no platform matches {list(image.platforms)}")
        kept = tuple(
            LockedManifest(child.digest, child.media_type, platform_of(c), image_bytes(child))
            for c in chosen
            for child in [client.manifest(image.reference, c["digest"])]
        )
    return LockedImage(image.reference, top.digest, top.media_type, now, image.platforms, kept)


def lock_images(
    server: str,
    images: Sequence[ChosenImage],
    report: Callable[[str], None],
    clock: Callable[[], float] = time.time,
) -> list[LockedImage]:
    """Every image locked, or OperationError naming each that failed."""
    client = RegistryClient(server)
    locked: list[LockedImage] = []
    errors: list[str] = []
    for image in images:
        try:
            entry = lock_image(client, image, clock())
        except OperationError as exc:
            errors.append(f"{image.source}: {exc}")
            continue
        locked.append(entry)
        report(f"locked {entry.reference} at {entry.digest} ({len(entry.manifests)} manifests)")
    if errors:
        raise OperationError("; ".join(errors))
    return locked
