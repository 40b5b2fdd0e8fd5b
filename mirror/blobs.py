"""Blobs: local hits, and one fill per digest that every client of that digest follows."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mirror.blobstore import BlobStore
from mirror.errors import BlobUnknown, Unavailable
from mirror.fill import Fill
from mirror.metadata import Metadata
from mirror.reference import Digest
from mirror.upstream import UpstreamNotFound, UpstreamRegistry

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
        """Release the reader when it will not be read (fill.read closes it otherwise)."""
        os.close(self.fd)


BlobSource = StoredBlob | FillingBlob


class BlobService:
    def __init__(self, store: BlobStore, metadata: Metadata, clock: Callable[[], float]) -> None:
        self._store = store
        self._metadata = metadata
        self._clock = clock
        self._fills: dict[str, Fill] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.coalesced = 0  # requests that joined a running fill

    async def close(self) -> None:
        """Cancel running fills and wait for them; their temp files are removed."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def fills_inflight(self) -> int:
        return len(self._fills)

    async def stat(self, upstream: UpstreamRegistry, repo: str, digest: Digest) -> int | None:
        """The blob's size for a HEAD; asks the upstream only when nothing is local."""
        key = str(digest)
        local = self._store.size_of(digest)
        fill = self._fills.get(key)
        if local is not None or (fill is not None and fill.size is not None):
            await self._check_repo_holds(upstream, repo, digest)
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
        if self._store.size_of(digest) is not None or key in self._fills:
            await self._check_repo_holds(upstream, repo, digest)
            size = self._store.size_of(digest)
            if size is not None:
                return StoredBlob(self._store.path(digest), size)
        fill = self._fills.get(key)
        if fill is None:
            fill = self._start_fill(upstream, repo, digest)
        else:
            self.coalesced += 1
        try:
            await fill.wait_started()
        except UpstreamNotFound:
            raise BlobUnknown(f"blob unknown: {repo}@{key}") from None
        # No await from here until the reader is open: the temp file cannot move meanwhile.
        if fill.succeeded and fill.final_path is not None and fill.size is not None:
            return StoredBlob(fill.final_path, fill.size)
        if fill.error is not None:
            raise Unavailable(f"download of {key} failed; try again")
        return FillingBlob(fill, fill.open_reader())

    async def _check_repo_holds(
        self, upstream: UpstreamRegistry, repo: str, digest: Digest
    ) -> None:
        """A blob stored for one repository is served under another only if upstream agrees."""
        key = str(digest)
        if await self._metadata.has_link(upstream.name, repo, key):
            return
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
            done.final_path = self._store.commit(done.temp_path, digest)
            await self._metadata.put_blob(key, done.written, self._clock())
            await self._metadata.add_link(upstream.name, repo, key)

        async def run() -> None:
            try:
                await fill.run(
                    lambda: upstream.open_blob(repo, key), on_verified, self._store.discard
                )
            finally:
                if self._fills.get(key) is fill:
                    del self._fills[key]

        # The fill belongs to the service, not to the request that started it: a client
        # that goes away does not stop it.
        task = asyncio.create_task(run(), name=f"fill {key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fill
