"""`mirror verify --lock`: is every locked image complete in the cache, as the lock pins it?

Complete means what an offline pull needs: the tag resolved to the locked digest, every locked
manifest stored, each config and layer stored (row and file, of the size the row records),
and all of it linked to the image's repository (else the cross-repository rule would refuse
it with no upstream to ask). Read-only. A blob is asked of the store it lives in: the data
folder, or the bucket (where another replica may have purged it behind this one's row).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

from mirror.config import Config
from mirror.reference import Digest
from mirror.stores.metadata import Metadata
from mirror.upkeep.lockfile import DOCKER_HUB, ImageRef, LockedImage

# The stored blob's size, None when the store does not hold it (BlobBackend.size_of).
StoredSize = Callable[[Digest], Awaitable[int | None]]


async def check_lock(
    metadata: Metadata, stored: StoredSize, config: Config, images: Sequence[LockedImage]
) -> list[str]:
    """What is missing, one line each, naming the image and the digest; empty: all there."""
    problems: list[str] = []
    for image in images:
        problems += await _check_image(metadata, stored, config, image)
    return problems


def _upstream_name(config: Config, registry: str) -> str | None:
    for upstream in config.upstreams:
        if upstream.name == registry:
            return upstream.name
    return config.upstreams[0].name if registry == DOCKER_HUB else None


async def _check_image(
    metadata: Metadata, stored: StoredSize, config: Config, image: LockedImage
) -> list[str]:
    ref = image.reference
    upstream = _upstream_name(config, ref.registry)
    if upstream is None:
        return [f"{ref}: no upstream named {ref.registry!r} here"]
    repo, problems = ref.repository, []
    if ref.tag is not None and ref.digest is None:
        row = await metadata.get_tag(upstream, repo, ref.tag)
        if row is None:
            problems.append(f"{ref}: tag not cached")
        elif str(row.digest) != image.digest:
            problems.append(f"{ref}: tag points at {row.digest}, the lock at {image.digest}")
    wanted = [image.digest, *(m.digest for m in image.manifests if m.digest != image.digest)]
    for text in wanted:
        digest = Digest.parse(text)
        manifest = await metadata.get_manifest(digest)
        if manifest is None:
            problems.append(f"{ref}: manifest {digest} missing")
            continue
        if not await metadata.has_link(upstream, repo, digest):
            problems.append(f"{ref}: manifest {digest} not linked to {repo}")
        if text == image.digest and len(wanted) > 1:
            continue  # an index: its platforms are checked in turn
        problems += await _check_parts(metadata, stored, upstream, ref, manifest.body)
    return problems


async def _check_parts(
    metadata: Metadata, stored: StoredSize, upstream: str, ref: ImageRef, body: bytes
) -> list[str]:
    problems: list[str] = []
    document = json.loads(body)
    layers = document.get("layers")
    parts = [document.get("config"), *(layers if isinstance(layers, list) else [])]
    repo = ref.repository
    for part in parts:
        if not isinstance(part, dict):
            continue
        digest = Digest.parse(part["digest"])
        row = await metadata.blob_row(digest)
        if row is None:
            problems.append(f"{ref}: blob {digest} missing")
        elif await stored(digest) != row.size:
            problems.append(f"{ref}: blob {digest} missing (gone from the store, or cut short)")
        elif not await metadata.has_link(upstream, repo, digest):
            problems.append(f"{ref}: blob {digest} not linked to {repo}")
    return problems
