"""In-memory copies of the metadata a cache hit reads, so a hit does not wait on SQLite."""

from __future__ import annotations

from collections import OrderedDict

from mirror.reference import Digest
from mirror.stores.records import StoredManifest, TagRow

MAX_TAGS = 100_000
MAX_LINKS = 500_000
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

TagKey = tuple[str, str, str]  # (upstream, repo, tag)
LinkKey = tuple[str, str, Digest]  # (upstream, repo, digest)


class ReadCache:
    """Write-through copies of tag rows, manifests and links; SQLite stays the truth.

    Only what exists is cached (a miss always asks SQLite), each part is bounded, and a purge
    clears it all: purges are rare, hits are not.
    """

    def __init__(self) -> None:
        self.tags: dict[TagKey, TagRow] = {}
        self.links: set[LinkKey] = set()
        self._manifests: OrderedDict[Digest, StoredManifest] = OrderedDict()
        self._manifest_bytes = 0
        # Bumped by clear(): a read that began before a purge must not cache what it found.
        self.generation = 0

    def put_tag(self, key: TagKey, row: TagRow) -> None:
        if len(self.tags) >= MAX_TAGS and key not in self.tags:
            self.tags.clear()
        self.tags[key] = row

    def add_link(self, key: LinkKey) -> None:
        if len(self.links) >= MAX_LINKS:
            self.links.clear()
        self.links.add(key)

    def manifest(self, digest: Digest) -> StoredManifest | None:
        manifest = self._manifests.get(digest)
        if manifest is not None:
            self._manifests.move_to_end(digest)
        return manifest

    def put_manifest(self, manifest: StoredManifest) -> None:
        """Least recently used manifests leave first once the byte bound is reached."""
        if manifest.digest in self._manifests:
            return
        self._manifests[manifest.digest] = manifest
        self._manifest_bytes += len(manifest.body)
        while self._manifest_bytes > MAX_MANIFEST_BYTES and self._manifests:
            _, oldest = self._manifests.popitem(last=False)
            self._manifest_bytes -= len(oldest.body)

    def clear(self) -> None:
        self.generation += 1
        self.tags.clear()
        self.links.clear()
        self._manifests.clear()
        self._manifest_bytes = 0
