"""`mirror import` / `POST /admin/import`: an OCI image layout merged into the cache.

Three steps, and the cache changes only in the last: stage every blob, checking its digest as
it is read (bundle_staging.py); check the whole graph (each image's manifests, configs and
layers are in the bundle with the sizes their descriptors give, each named image has an
upstream here, each blob fits under max_size); then commit: blobs the store lacks (through the
blob keeper; one a shared bucket holds already is indexed, not uploaded), manifests with their
links to the image's repository (the cross-repository rule then holds offline), tags last. A
tag keeps what the cache holds when that was resolved later than the bundle's (merge: the
newest resolution wins).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mirror.config import Config, UpstreamConfig
from mirror.errors import DigestInvalid
from mirror.reference import Digest
from mirror.stores.blob_files import BlobFiles
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.ledger import UsageLedger
from mirror.stores.records import StoredManifest, TagRow
from mirror.stores.shared_index import SharedIndex
from mirror.upkeep.bundle_staging import BundleRefused, Staged, stage_path, stage_tar
from mirror.upkeep.lockfile import DOCKER_HUB, ImageRef, parse_image, parse_time

REF_NAME = "org.opencontainers.image.ref.name"
RESOLVED_AT = "mirror.resolved-at"
MANIFEST_LIMIT = 4 * 1024 * 1024
MAX_DEPTH = 4  # an index of indexes is already unusual


@dataclass(frozen=True, slots=True)
class NamedImage:
    reference: ImageRef
    upstream: UpstreamConfig
    digest: Digest
    media_type: str
    resolved_at: float
    reachable: frozenset[Digest]  # its manifests in the bundle


@dataclass(slots=True)
class Plan:
    manifests: dict[Digest, StoredManifest] = field(default_factory=dict)
    blobs: dict[Digest, int] = field(default_factory=dict)
    images: list[NamedImage] = field(default_factory=list)
    unnamed: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ImportReport:
    images: list[str] = field(default_factory=list)
    manifests: int = 0
    blobs: int = 0
    blobs_added: int = 0
    bytes_added: int = 0
    kept_newer: list[str] = field(default_factory=list)  # tags the cache resolved later
    unnamed: list[str] = field(default_factory=list)  # entries with no reference: left out


class BundleImporter:
    def __init__(
        self,
        index: SharedIndex,
        files: BlobFiles,
        keeper: BlobKeeper,
        ledger: UsageLedger,
        config: Config,
        clock: Callable[[], float],
    ) -> None:
        # Through the shared index: with a bucket, every replica serves what was imported.
        self._index, self._metadata = index, index.metadata
        self._files, self._keeper = files, keeper
        self._ledger, self._config, self._clock = ledger, config, clock

    async def import_tar(self, source: IO[bytes] | io.RawIOBase) -> ImportReport:
        staged = await asyncio.to_thread(stage_tar, source, self._files)
        return await self._finish(staged)

    async def import_path(self, path: Path) -> ImportReport:
        """A tar file, or an OCI layout directory."""
        staged = await asyncio.to_thread(stage_path, path, self._files)
        return await self._finish(staged)

    async def _finish(self, staged: Staged) -> ImportReport:
        try:
            plan = await asyncio.to_thread(self._plan, staged)
            return await self._commit(plan, staged)
        finally:
            staged.discard()  # what was committed was renamed away; the rest goes

    # -- checks: nothing is written ---------------------------------------------------------

    def _plan(self, staged: Staged) -> Plan:
        if staged.index is None:
            raise BundleRefused("the bundle has no index.json (cut short, or not a layout)")
        if staged.layout is None:
            raise BundleRefused("the bundle has no oci-layout file (not an OCI image layout)")
        try:
            entries = json.loads(staged.index)["manifests"]
            assert isinstance(entries, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            raise BundleRefused("index.json is not an OCI image index") from None
        plan = Plan()
        for entry in entries:
            digest, size, media_type = _descriptor(entry, "index.json")
            annotations = entry.get("annotations") or {}
            name = annotations.get(REF_NAME)
            if not isinstance(name, str):
                # No repository to hold it under: unreachable in the cache, so not imported.
                plan.unnamed.append(str(digest))
                continue
            reachable: set[Digest] = set()
            self._walk(staged, plan, digest, size, media_type, reachable, required=True, depth=0)
            try:
                reference = parse_image(name)
                when = annotations.get(RESOLVED_AT)
                resolved_at = parse_time(when) if isinstance(when, str) else self._clock()
            except ValueError as exc:
                raise BundleRefused(f"index.json names {name!r}: {exc}") from None
            top = plan.manifests[digest]
            upstream = self._upstream(reference)
            plan.images.append(
                NamedImage(
                    reference, upstream, digest, top.media_type, resolved_at, frozenset(reachable)
                )
            )
        for digest, size in plan.blobs.items():
            if self._ledger.too_large(size):
                raise BundleRefused(f"blob {digest} ({size} bytes) exceeds storage.max_size")
        return plan

    def _upstream(self, reference: ImageRef) -> UpstreamConfig:
        for upstream in self._config.upstreams:
            if upstream.name == reference.registry:
                return upstream
        if reference.registry == DOCKER_HUB:
            return self._config.upstreams[0]  # the default upstream stands for Docker Hub
        raise BundleRefused(f"{reference}: no upstream named {reference.registry!r} here")

    def _walk(
        self,
        staged: Staged,
        plan: Plan,
        digest: Digest,
        size: int,
        media_type: str,
        reachable: set[Digest],
        *,
        required: bool,
        depth: int,
    ) -> None:
        """A manifest and what it needs. An index's platforms may be missing (an export kept
        only some); an image manifest's config and layers may not."""
        found = staged.blobs.get(digest)
        if found is None:
            if required:
                raise BundleRefused(f"manifest {digest} is missing from the bundle")
            return
        temp, staged_size = found
        if staged_size != size:
            raise BundleRefused(f"manifest {digest}: {staged_size} bytes, {size} announced")
        if depth > MAX_DEPTH or size > MANIFEST_LIMIT:
            raise BundleRefused(f"manifest {digest} is nested too deep or too large")
        body = temp.read_bytes()
        try:
            document = json.loads(body)
            assert isinstance(document, dict)
        except (ValueError, AssertionError):
            raise BundleRefused(f"manifest {digest} is not a JSON object") from None
        declared = document.get("mediaType")
        kind = declared if isinstance(declared, str) else media_type
        plan.manifests[digest] = StoredManifest(digest, kind, body)
        reachable.add(digest)
        children = document.get("manifests")
        for child in children if isinstance(children, list) else []:
            child_digest, child_size, child_type = _descriptor(child, str(digest))
            self._walk(
                staged,
                plan,
                child_digest,
                child_size,
                child_type,
                reachable,
                required=False,
                depth=depth + 1,
            )
        layers = document.get("layers")
        parts = [document.get("config"), *(layers if isinstance(layers, list) else [])]
        for part in parts:
            if part is None:
                continue
            blob, blob_size, _ = _descriptor(part, str(digest))
            if blob not in staged.blobs:
                raise BundleRefused(f"blob {blob} (of {digest}) is missing from the bundle")
            if staged.blobs[blob][1] != blob_size:
                got = staged.blobs[blob][1]
                raise BundleRefused(
                    f"blob {blob}: {got} bytes in the bundle, {blob_size} announced"
                )
            plan.blobs[blob] = blob_size

    # -- commit -----------------------------------------------------------------------------

    async def _commit(self, plan: Plan, staged: Staged) -> ImportReport:
        report = ImportReport(manifests=len(plan.manifests), blobs=len(plan.blobs))
        report.unnamed = plan.unnamed
        now = self._clock()
        for digest, size in plan.blobs.items():
            if await self._held(digest, size, now):
                continue  # the staged copy is dropped
            if await self._keeper.admit(staged.blobs[digest][0], digest, size, now):
                report.blobs_added += 1
                report.bytes_added += size
        for image in plan.images:
            repo = image.reference.repository
            for digest in sorted(image.reachable, key=str):
                manifest = plan.manifests[digest]
                await self._index.put_manifest(manifest, now, image.upstream.name, repo)
        for image in plan.images:
            report.images.append(str(image.reference))
            if image.reference.tag is not None:
                await self._tag(image, report)
        return report

    async def _held(self, digest: Digest, size: int, now: float) -> bool:
        """The store holds this blob already, indexed here from now on. Asked of the store even
        when a row names it: a file can be lost, and another replica may have purged a shared
        bucket's object since (an import is often the only source, so it must not trust the
        row). A bucket's object no row names here was stored by another replica: adopted."""
        row = await self._metadata.blob_row(digest)
        if self._keeper.backend.local:
            return row is not None and self._files.size_of(digest) == row.size
        if await self._keeper.backend.size_of(digest) != size:
            return False  # absent (or, against every write's checks, not whole): uploaded
        if row is None:
            await self._keeper.adopt(digest, size, now)
        return True

    async def _tag(self, image: NamedImage, report: ImportReport) -> None:
        upstream, repo, tag = image.upstream, image.reference.repository, image.reference.tag
        assert tag is not None
        held = await self._metadata.get_tag(upstream.name, repo, tag)
        if (
            held is not None
            and held.digest != image.digest
            and held.resolved_at > image.resolved_at
        ):
            report.kept_newer.append(str(image.reference))
            return
        row = TagRow(image.digest, image.media_type, image.resolved_at)
        # Locked: the site chose this image; retention and eviction leave it alone. Counted as
        # pulled on import, not at export time, for the catalog.
        await self._index.put_tag(
            upstream.name,
            repo,
            tag,
            row,
            self._config.tag_ttl_for(upstream),
            locked=True,
            pulled_at=self._clock(),
        )


def _descriptor(entry: Any, where: str) -> tuple[Digest, int, str]:
    try:
        digest = Digest.parse(entry["digest"])
        size, media_type = entry["size"], entry.get("mediaType", "")
        assert isinstance(size, int) and size >= 0 and isinstance(media_type, str)
    except (DigestInvalid, KeyError, TypeError, AttributeError, AssertionError):
        raise BundleRefused(f"{where} holds a malformed descriptor") from None
    return digest, size, media_type
