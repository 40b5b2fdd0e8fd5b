"""Manifests: tags remote-first with a TTL and stale-if-error; digests local-first, kept forever.
With a bucket, "local" includes what other replicas recorded there (stores/shared_index.py):
a tag stale or unknown here, and a manifest by digest, are looked up there before upstream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass

from mirror.errors import (
    ManifestUnknown,
    Unavailable,
    UpstreamDenied,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from mirror.media_types import ALL_MANIFEST_TYPES, accepts
from mirror.metrics import CacheResult, Metrics
from mirror.reference import Digest, Reference, Tag
from mirror.services.singleflight import SingleFlight
from mirror.stores.records import StoredManifest, TagRow
from mirror.stores.shared_index import SharedIndex
from mirror.upstream.client import UpstreamRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ManifestResult:
    manifest: StoredManifest
    source: CacheResult

    @property
    def stale(self) -> bool:
        return self.source == "stale"


class ManifestService:
    def __init__(
        self,
        index: SharedIndex,
        clock: Callable[[], float],
        tag_ttl: Callable[[UpstreamRegistry], float],
        metrics: Metrics,
    ) -> None:
        self._index = index
        self._metadata = index.metadata
        self._metrics = metrics
        self._clock = clock
        self._tag_ttl = tag_ttl
        self._resolving: SingleFlight[StoredManifest] = SingleFlight()
        self._fetching: SingleFlight[StoredManifest] = SingleFlight()
        self._adopting: SingleFlight[StoredManifest | None] = SingleFlight()
        # When each running tag resolution started (loop time): the stale deadline counts
        # from there, so a client that joins a hung resolution late is not kept waiting anew.
        self._resolving_since: dict[Hashable, float] = {}

    async def close(self) -> None:
        await self._resolving.close()
        await self._fetching.close()
        await self._adopting.close()

    async def get(
        self, upstream: UpstreamRegistry, repo: str, ref: Reference, accept: Sequence[str]
    ) -> ManifestResult:
        result = await self._get(upstream, repo, ref, accept)
        # Retention and the catalog count pulls; HEAD requests count too (dockerd checks a
        # tag with HEAD and pulls nothing more when it has the image).
        tag = None if isinstance(ref, Digest) else ref.name
        self._metadata.record_pull(upstream.name, repo, tag, result.manifest.digest, self._clock())
        return result

    async def _get(
        self, upstream: UpstreamRegistry, repo: str, ref: Reference, accept: Sequence[str]
    ) -> ManifestResult:
        if isinstance(ref, Digest):
            result = await self._by_digest(upstream, repo, ref)
            media_type = result.manifest.media_type
            if not accepts(accept, media_type):
                raise ManifestUnknown(
                    f"manifest {ref} is {media_type}, which the client does not accept"
                )
            return result
        result = await self._by_tag(upstream, repo, ref)
        if accepts(accept, result.manifest.media_type):
            return result
        # The tag's usual answer (say an index) is not for this client: ask as it asked.
        return ManifestResult(await self._fetch_for_accept(upstream, repo, ref, accept), "miss")

    async def revalidate(
        self, upstream: UpstreamRegistry, repo: str, tag: Tag
    ) -> tuple[Digest | None, Digest]:
        """Resolve a tag upstream now, whatever its TTL; the old and the new digest."""
        row = await self._metadata.get_tag(upstream.name, repo, tag.name)
        try:
            manifest = await self._resolving.run(
                (upstream.name, repo, tag.name),
                lambda: self._resolve_tag(upstream, repo, tag, row),
            )
        except UpstreamNotFound:
            raise ManifestUnknown(f"manifest unknown: {repo}:{tag}") from None
        return (row.digest if row else None), manifest.digest

    # -- tags -------------------------------------------------------------------------------

    async def _by_tag(self, upstream: UpstreamRegistry, repo: str, tag: Tag) -> ManifestResult:
        row = await self._metadata.get_tag(upstream.name, repo, tag.name)
        last_known = None if row is None else await self._metadata.get_manifest(row.digest)
        if last_known is not None and self._usable(row, upstream):
            self._metrics.cache("tag", "hit")
            return ManifestResult(last_known, "hit")
        if self._index.shared:
            # Stale or unknown here: what the replicas recorded in the bucket may be newer.
            ttl, now, known = self._tag_ttl(upstream), self._clock(), last_known
            # One read of the record however many clients ask at once (a storm on a stale tag).
            last_known = await self._adopting.run(
                (upstream.name, repo, tag.name),
                lambda: self._index.adopt_tag(upstream.name, repo, tag.name, row, known, ttl, now),
            )
            row = await self._metadata.get_tag(upstream.name, repo, tag.name)
            if last_known is not None and self._usable(row, upstream):
                self._metrics.cache("tag", "hit")
                return ManifestResult(last_known, "hit")
        key = (upstream.name, repo, tag.name)
        try:
            manifest = await self._resolve_within(
                key, lambda: self._resolve_tag(upstream, repo, tag, row), last_known, upstream
            )
        except UpstreamNotFound:
            raise ManifestUnknown(f"manifest unknown: {repo}:{tag}") from None
        except (UpstreamUnavailable, UpstreamDenied) as exc:
            # Auth failures count as upstream failures for what is cached: a token server that
            # is down or refuses us, or a registry that rejects a fresh token, must not make a
            # cached image unpullable. Nothing cached: the client gets the error as it is.
            if last_known is None:
                raise
            log.warning("serving %s:%s from cache: %s", repo, tag, exc.message)
            self._metrics.cache("tag", "stale")
            return ManifestResult(last_known, "stale")
        except TimeoutError:
            assert last_known is not None  # only a resolution with a stale answer has a deadline
            log.warning(
                "serving %s:%s from cache: upstream %s did not answer within %gs",
                repo,
                tag,
                upstream.name,
                upstream.config.stale_after,
            )
            self._metrics.cache("tag", "stale")
            return ManifestResult(last_known, "stale")
        self._metrics.cache("tag", "miss")
        return ManifestResult(manifest, "miss")

    def _usable(self, row: TagRow | None, upstream: UpstreamRegistry) -> bool:
        return row is not None and (self._fresh(row, upstream) or upstream.config.offline)

    def _fresh(self, row: TagRow, upstream: UpstreamRegistry) -> bool:
        """Fresh for the TTL in force now, counted from when the tag was resolved: a row does
        not carry an expiry, so a shorter `tag_ttl` applies to tags resolved before it."""
        return self._clock() < row.resolved_at + self._tag_ttl(upstream)

    async def _resolve_within(
        self,
        key: Hashable,
        work: Callable[[], Awaitable[StoredManifest]],
        last_known: StoredManifest | None,
        upstream: UpstreamRegistry,
    ) -> StoredManifest:
        """The shared resolution of a tag. With a stale answer at hand, wait for it at most
        `stale_after` from the moment it started (TimeoutError); it goes on in the background
        and refreshes the tag when the upstream answers."""
        loop = asyncio.get_running_loop()

        async def timed() -> StoredManifest:
            self._resolving_since[key] = loop.time()
            try:
                return await work()
            finally:
                self._resolving_since.pop(key, None)

        if last_known is None:
            return await self._resolving.run(key, timed)
        since = self._resolving_since.get(key, loop.time())
        remaining = max(0.0, since + upstream.config.stale_after - loop.time())
        deadline = asyncio.timeout(remaining)
        try:
            async with deadline:
                return await self._resolving.run(key, timed)
        except TimeoutError:
            if deadline.expired():
                raise
            # A TimeoutError of the resolution itself, not our deadline: an upstream failure.
            raise UpstreamUnavailable(upstream.name, "timeout", "timed out") from None

    async def _resolve_tag(
        self, upstream: UpstreamRegistry, repo: str, tag: Tag, row: TagRow | None
    ) -> StoredManifest:
        """Revalidate with a HEAD (free on Docker Hub) when we know the tag, else one GET."""
        if row is not None:
            digest = await upstream.head_manifest(repo, tag, ALL_MANIFEST_TYPES)
            if digest is not None:
                result = await self._by_digest(upstream, repo, digest, linked=True)
                manifest = result.manifest
                await self._remember_tag(upstream, repo, tag, manifest)
                return manifest
        fetched = await upstream.get_manifest(repo, tag, ALL_MANIFEST_TYPES)
        manifest = self._verified(fetched.body, fetched.media_type, fetched.digest, None)
        await self._store(upstream, repo, manifest)
        await self._remember_tag(upstream, repo, tag, manifest)
        return manifest

    async def _remember_tag(
        self, upstream: UpstreamRegistry, repo: str, tag: Tag, manifest: StoredManifest
    ) -> None:
        row = TagRow(manifest.digest, manifest.media_type, self._clock())
        # Known here, but purged from the bucket through another replica meanwhile: put back
        # before the record that names it.
        await self._index.republish(manifest, upstream.name, repo)
        await self._index.put_tag(upstream.name, repo, tag.name, row, self._tag_ttl(upstream))

    async def _fetch_for_accept(
        self, upstream: UpstreamRegistry, repo: str, tag: Tag, accept: Sequence[str]
    ) -> StoredManifest:
        try:
            fetched = await upstream.get_manifest(repo, tag, accept)
        except UpstreamNotFound:
            raise ManifestUnknown(f"{repo}:{tag} has no manifest of an accepted type") from None
        if not accepts(accept, fetched.media_type):
            raise ManifestUnknown(f"{repo}:{tag} has no manifest of an accepted type")
        manifest = self._verified(fetched.body, fetched.media_type, fetched.digest, None)
        await self._store(upstream, repo, manifest)
        return manifest

    # -- digests ----------------------------------------------------------------------------

    async def _by_digest(
        self, upstream: UpstreamRegistry, repo: str, digest: Digest, linked: bool = False
    ) -> ManifestResult:
        """Local first; `linked` says the upstream just vouched that repo holds this digest."""
        stored = await self._metadata.get_manifest(digest)
        adopted = stored is None and self._index.shared
        if adopted:  # another replica's, read once however many clients ask at once
            stored = await self._adopting.run(
                ("by digest", str(digest)), lambda: self._index.shared_manifest(digest)
            )
        if stored is not None:
            if linked:
                await self._index.add_link(upstream.name, repo, digest)
            elif not await self._index.has_link(upstream.name, repo, digest):
                await self._confirm_upstream_holds(upstream, repo, digest)
            if adopted:
                await self._index.put_manifest(
                    stored, self._clock(), upstream.name, repo, publish=False
                )
            self._metrics.cache("manifest", "hit")
            return ManifestResult(stored, "hit")
        self._metrics.cache("manifest", "miss")
        try:
            fetched = await self._fetching.run(
                (upstream.name, repo, digest), lambda: self._fetch_digest(upstream, repo, digest)
            )
            return ManifestResult(fetched, "miss")
        except UpstreamNotFound:
            raise ManifestUnknown(f"manifest unknown: {repo}@{digest}") from None

    async def _confirm_upstream_holds(
        self, upstream: UpstreamRegistry, repo: str, digest: Digest
    ) -> None:
        """Content cached for another repository is served here only if upstream agrees."""
        try:
            await upstream.head_manifest(repo, digest, ALL_MANIFEST_TYPES)
        except UpstreamNotFound:
            raise ManifestUnknown(f"manifest unknown: {repo}@{digest}") from None
        await self._index.add_link(upstream.name, repo, digest)

    async def _fetch_digest(
        self, upstream: UpstreamRegistry, repo: str, digest: Digest
    ) -> StoredManifest:
        fetched = await upstream.get_manifest(repo, digest, ALL_MANIFEST_TYPES)
        manifest = self._verified(fetched.body, fetched.media_type, fetched.digest, digest)
        await self._store(upstream, repo, manifest)
        return manifest

    def _verified(
        self, body: bytes, media_type: str, header_digest: Digest | None, wanted: Digest | None
    ) -> StoredManifest:
        """Check the bytes against the digest asked for and the one the upstream announced."""
        for claimed in (wanted, header_digest):
            if claimed is not None and not claimed.matches(body):
                self._metrics.digest_mismatches.inc()
                raise Unavailable(f"upstream manifest does not match {claimed}")
        # Keep the digest in the algorithm the client and the upstream speak.
        digest = wanted or header_digest or Digest.of(body)
        return StoredManifest(digest, media_type, body)

    async def _store(self, upstream: UpstreamRegistry, repo: str, manifest: StoredManifest) -> None:
        await self._index.put_manifest(manifest, self._clock(), upstream.name, repo)
