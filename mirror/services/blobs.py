"""Blobs: local hits, and one fill per digest that every client of that digest follows."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from mirror.errors import BlobUnknown, Unavailable
from mirror.metrics import Metrics
from mirror.reference import Digest
from mirror.services.fill import DigestMismatch, Fill
from mirror.stores.blob_files import BlobStore
from mirror.stores.ledger import BlobUsage
from mirror.stores.metadata import Metadata
from mirror.upstream.client import UpstreamNotFound, UpstreamRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A verified blob on disk: served with sendfile."""

    path: Path
    size: int


@dataclass(frozen=True, slots=True)
class FillingBlob:
    """A blob still arriving: `fd` reads the growing file through `fill.read`."""

    fill: Fill
    fd: int

    def close(self) -> None:
        """Release the reader's descriptor."""
        os.close(self.fd)


BlobSource = StoredBlob | FillingBlob


class BlobService:
    def __init__(
        self,
        store: BlobStore,
        metadata: Metadata,
        usage: BlobUsage,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._metadata = metadata
        self._usage = usage
        self._metrics = metrics
        self._clock = clock
        self._fills: dict[str, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        metrics.fills_inflight.set_function(lambda: len(self._fills))

    async def close(self) -> None:
        """Cancel running fills and wait for them; their temp files are removed."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @contextmanager
    def reading(self, digest: Digest) -> Iterator[None]:
        """Mark a blob in use while a client reads it, so eviction passes it by."""
        key = str(digest)
        self._usage.acquire(key)
        try:
            yield
        finally:
            self._usage.release(key)

    async def stat(self, upstream: UpstreamRegistry, repo: str, digest: Digest) -> int | None:
        """The blob's size for a HEAD; asks the upstream only when nothing is local."""
        key = str(digest)
        local = self._store.size_of(digest)
        fill = self._fills.get(key)
        if local is not None or (fill is not None and fill.size is not None):
            if not await self._metadata.has_link(upstream.name, repo, key):
                await self._confirm_upstream_holds(upstream, repo, digest)
            self._metrics.cache("blob", "hit" if local is not None else "miss")
            return local if local is not None else (fill.size if fill else None)
        try:
            size = await upstream.head_blob(repo, key)
        except UpstreamNotFound:
            raise BlobUnknown(f"blob unknown: {repo}@{key}") from None
        await self._metadata.add_link(upstream.name, repo, key)
        return size

    async def open(self, upstream: UpstreamRegistry, repo: str, digest: Digest) -> BlobSource:
        """A stored blob, or a reader on the fill that is (or is now) downloading it."""
        key = str(digest)
        linked = await self._metadata.has_link(upstream.name, repo, key)
        # Stat after every await, so the file cannot have gone between stat and send.
        size = self._store.size_of(digest)
        if (size is not None or key in self._fills) and not linked:
            await self._confirm_upstream_holds(upstream, repo, digest)
            size = self._store.size_of(digest)
        for _ in range(3):
            if size is not None:
                self._metrics.cache("blob", "hit")
                self._usage.touch(key, self._clock())
                return StoredBlob(self._store.path(digest), size)
            fill = self._fills.get(key)
            if fill is None:
                fill = self._start_fill(upstream, repo, digest)
            else:
                self._metrics.coalesced.inc()
            self._metrics.cache("blob", "miss")
            try:
                await fill.wait_started()
            except UpstreamNotFound:
                raise BlobUnknown(f"blob unknown: {repo}@{key}") from None
            # No await from here until the reader is open: the temp file cannot move meanwhile.
            if fill.error is not None:
                raise Unavailable(f"download of {key} failed; try again")
            if not fill.finished.is_set():
                return FillingBlob(fill, fill.open_reader())
            # The fill ended while we waited: stored (a hit next time round) or, when larger
            # than the whole bound, streamed and dropped (a new fill for this client).
            size = self._store.size_of(digest)
        raise Unavailable(f"download of {key} did not settle; try again")

    async def _confirm_upstream_holds(
        self, upstream: UpstreamRegistry, repo: str, digest: Digest
    ) -> None:
        """A blob stored for one repository is served under another only if upstream agrees."""
        key = str(digest)
        try:
            await upstream.head_blob(repo, key)
        except UpstreamNotFound:
            raise BlobUnknown(f"blob unknown: {repo}@{key}") from None
        await self._metadata.add_link(upstream.name, repo, key)

    def _start_fill(self, upstream: UpstreamRegistry, repo: str, digest: Digest) -> Fill:
        key = str(digest)
        fill = Fill(digest, repo, self._store.new_temp())
        self._fills[key] = fill

        async def on_verified(done: Fill) -> None:
            if self._usage.max_size and done.written > self._usage.max_size:
                # Larger than the whole bound: readers finish from their open descriptors.
                log.warning("blob %s (%d bytes) exceeds max_size; not stored", key, done.written)
                self._store.discard(done.temp_path)
                return
            done.final_path = self._store.commit(done.temp_path, digest)
            self._usage.cancel_pending(key)  # a purge of the previous copy must spare this one
            if await self._metadata.put_blob(key, done.written, self._clock()):
                self._usage.added(done.written)
            await self._metadata.add_link(upstream.name, repo, key)

        async def run() -> None:
            self._usage.acquire(key)
            try:
                await fill.run(
                    lambda: upstream.open_blob(repo, key), on_verified, self._store.discard
                )
            finally:
                self._usage.release(key)
                if self._fills.get(key) is fill:
                    del self._fills[key]
                self._metrics.upstream_bytes.labels(upstream.name).inc(fill.written)
                if isinstance(fill.error, DigestMismatch):
                    self._metrics.digest_mismatches.inc()

        # The fill belongs to the service, not to the request that started it: a client
        # that goes away does not stop it.
        task = asyncio.create_task(run(), name=f"fill {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fill
