"""Blobs: local hits, and one fill per digest that every client of that digest follows."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mirror.errors import (
    BlobUnknown,
    DigestMismatch,
    FillFailed,
    Unavailable,
    UpstreamNotFound,
)
from mirror.metrics import Metrics
from mirror.reference import Digest
from mirror.services.bucket_objects import BucketBlob, BucketObjects
from mirror.services.fill import BlobStream, Fill
from mirror.services.fill_limits import FillLimits
from mirror.services.fill_outcomes import client_error, failure_reason
from mirror.services.fill_upload import FillUpload
from mirror.services.pending_uploads import PendingUploads
from mirror.stores.blob_files import BlobFiles
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.disk_space import DiskSpace
from mirror.stores.leases import BlobLeases
from mirror.stores.ledger import Reservation, UsageLedger
from mirror.stores.shared_index import SharedIndex
from mirror.upstream.client import UpstreamRegistry

log = logging.getLogger(__name__)

# A client whose fill ended just as it joined looks again; more than a few rounds means the
# blob keeps failing to settle, and the client is told to retry.
JOIN_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A verified blob on disk: served with sendfile."""

    path: Path
    size: int


BlobSource = StoredBlob | BucketBlob | BlobStream


class BlobService:
    def __init__(
        self,
        files: BlobFiles,
        index: SharedIndex,
        keeper: BlobKeeper,
        ledger: UsageLedger,
        leases: BlobLeases,
        disk: DiskSpace,
        metrics: Metrics,
        clock: Callable[[], float],
        limits: FillLimits,
        fetch_unreferenced: bool = True,
        *,
        redirect: bool = False,
    ) -> None:
        self._files = files
        self._backend = keeper.backend
        self._redirect = redirect
        self._index = index
        self._metadata = index.metadata
        self._keeper = keeper
        self._ledger = ledger
        self._leases = leases
        self._disk = disk
        self._metrics = metrics
        self._clock = clock
        self._limits = limits
        self._fetch_unreferenced = fetch_unreferenced
        self._fills: dict[Digest, Fill] = {}
        # With a bucket: its objects (found, read, redirected to, gone); unused otherwise.
        self.bucket = BucketObjects(self._backend, self._metadata, keeper, leases, clock)
        # Verified here, still being completed in the bucket: served from the local file.
        self._pending = PendingUploads(files, keeper, self._metadata)
        self._tasks: set[asyncio.Task[None]] = set()
        self.stopping = False  # close() waits for the uploads completing behind clients
        metrics.fills_inflight.set_function(lambda: len(self._fills))

    async def close(self) -> None:
        """Cancel running fills and wait for them (their temp files are removed); then wait
        for, or abort, the uploads completing behind their clients (PendingUploads)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.stopping = True
        await self._pending.close()
        await self.bucket.close()

    async def uploads_settled(self) -> None:
        """Wait for the uploads completing behind their clients (PendingUploads)."""
        await self._pending.settled()

    @contextmanager
    def reading(self, digest: Digest) -> Iterator[None]:
        """Mark a blob in use while a client reads it, so eviction and purges pass it by."""
        with self._leases.held(digest), self._pending.reading(digest):
            yield

    async def stat(self, upstream: UpstreamRegistry, repo: str, digest: Digest) -> int | None:
        """The blob's size for a HEAD; asks the upstream only when nothing is local. HEAD
        answers as GET would: an unreferenced blob is refused the same way."""
        if not self._fetch_unreferenced and not await self._present(digest):
            await self._refuse_unreferenced(repo, digest)
        local = await self._stored_size(digest)
        fill = self._fills.get(digest)
        if local is not None or (fill is not None and fill.size is not None):
            if not await self._index.has_link(upstream.name, repo, digest):
                await self._confirm_upstream_holds(upstream, repo, digest)
            self._metrics.cache("blob", "hit" if local is not None else "miss")
            return local if local is not None else (fill.size if fill else None)
        try:
            size = await upstream.head_blob(repo, digest)
        except UpstreamNotFound:
            raise BlobUnknown(f"blob unknown: {repo}@{digest}") from None
        await self._index.add_link(upstream.name, repo, digest)
        return size

    async def open(
        self, upstream: UpstreamRegistry, repo: str, digest: Digest, client: str | None = None
    ) -> BlobSource:
        """A stored blob, or a reader on the fill that is (or is now) downloading it. A new
        fill counts against the limits for `client` (its address)."""
        linked = await self._index.has_link(upstream.name, repo, digest)
        # With redirects, the bucket is asked for the object while the index is read; not
        # before an upstream HEAD (unlinked: the check must be as recent as the request), nor
        # while the blob is served from this replica's disk (its upload still completing).
        redirecting = linked and self._redirect and digest not in self._pending
        early = self.bucket.check_soon(digest) if redirecting else None
        if not self._fetch_unreferenced and not await self._present(digest):
            await self._refuse_unreferenced(repo, digest)
        # Stat after every await, so the file cannot have gone between stat and send (for the
        # filesystem, _stored_size does not suspend: stat and return happen in one step).
        size = await self._stored_size(digest)
        if (size is not None or digest in self._fills) and not linked:
            await self._confirm_upstream_holds(upstream, repo, digest)
            size = await self._stored_size(digest)
        for _ in range(JOIN_ATTEMPTS):
            if size is not None:
                self._metrics.cache("blob", "hit")
                self._ledger.touch(digest, self._clock())
                if (verified := self._pending.path(digest)) is not None:
                    return StoredBlob(verified, size)  # its upload is still completing
                if not self._backend.local:
                    return BucketBlob(digest, size, self._redirect, early)
                return StoredBlob(self._files.path(digest), size)
            fill = self._fills.get(digest)
            if fill is None:
                fill = self._start_fill(upstream, repo, digest, client)
            else:
                self._metrics.coalesced.inc()
            self._metrics.cache("blob", "miss")
            await fill.wait_started()
            # No await from here until the reader is open: the temp file cannot move meanwhile.
            if fill.error is not None:
                raise client_error(fill, repo)
            if not fill.finished.is_set():
                return fill.reader()
            # The fill ended while we waited: stored (a hit next time round) or, when larger
            # than the whole bound, streamed and dropped (a new fill for this client).
            size = await self._stored_size(digest)
        raise Unavailable(f"download of {digest} did not settle; try again")

    async def _present(self, digest: Digest) -> bool:
        return digest in self._fills or await self._stored_size(digest) is not None

    async def _refuse_unreferenced(self, repo: str, digest: Digest) -> None:
        """With cache.fetch_unreferenced_blobs = false, only what a cached manifest references
        is fetched: a client cannot fill the disk with arbitrary blobs."""
        if await self._metadata.is_referenced(digest) or await self._present(digest):
            return
        self._metrics.fills_refused.labels("unreferenced").inc()
        raise BlobUnknown(
            f"blob unknown: {repo}@{digest} is referenced by no cached manifest"
            " (cache.fetch_unreferenced_blobs = false): pull its manifest first"
        )

    async def _stored_size(self, digest: Digest) -> int | None:
        """The stored blob's size; None when absent, or purged and kept only for the readers
        it had (a new request fetches it again)."""
        if self._leases.pending_removal(digest):
            return None
        if self._backend.local:
            return self._files.size_of(digest)
        if digest in self._fills:
            return None  # its row is written before it settles: readers follow the fill
        # Verified here but not complete in the bucket: its row, no HEAD of the bucket.
        return await self.bucket.stored_size(digest, filling=digest in self._pending)

    async def _confirm_upstream_holds(
        self, upstream: UpstreamRegistry, repo: str, digest: Digest
    ) -> None:
        """A blob stored for one repository is served under another only if upstream agrees."""
        try:
            await upstream.head_blob(repo, digest)
        except UpstreamNotFound:
            raise BlobUnknown(f"blob unknown: {repo}@{digest}") from None
        await self._index.add_link(upstream.name, repo, digest)

    def _start_fill(
        self, upstream: UpstreamRegistry, repo: str, digest: Digest, client: str | None
    ) -> Fill:
        ended = self._limits.start(len(self._fills), client)  # raises when over a bound
        fill = Fill(digest, self._files.new_temp())
        self._fills[digest] = fill
        # The fill belongs to the service, not to the request that started it: a client
        # that goes away does not stop it.
        task = asyncio.create_task(self._run_fill(fill, upstream, repo), name=f"fill {digest}")
        # Released when the fill settles (below), or with its task if it never ran.
        fill.on_settled = ended
        task.add_done_callback(lambda _: ended())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return fill

    async def _run_fill(self, fill: Fill, upstream: UpstreamRegistry, repo: str) -> None:
        """Download, store through the keeper, and only then release the last byte (with a
        bucket: once the row is written and the verified file handed over, while the upload
        completes behind)."""
        digest = fill.digest
        error: BaseException | None = None
        reservation: Reservation | None = None

        async def reserve(size: int) -> None:
            nonlocal reservation
            reservation = await self._keeper.reserve(size)

        self._leases.acquire(digest)
        # A bucket: parts go up while the download runs; the object appears only after the
        # digest is verified (finish), and a failed fill leaves nothing (abort).
        upload = self._backend.begin_upload(fill.temp_path, digest)
        following = None if upload is None else FillUpload(fill, upload)
        handed = False  # to PendingUploads, which completes (or aborts) the upload
        try:
            await fill.download(partial(upstream.open_blob, repo, digest), reserve)
            # Larger than the whole bound: never stored, so never completed (aborted below).
            # Otherwise the keeper writes the row and the temp file stays, for the upload and
            # for hits until the object is complete (PendingUploads): the last byte need not
            # wait for the bucket.
            handing = following is not None and self._keeper.fits(fill.written)
            await self._keeper.admit(
                fill.temp_path, digest, fill.written, self._clock(), reservation, uploaded=handing
            )
            if following is not None and handing:
                # Before settle, in the same step: the next reader finds the local file.
                self._pending.hand_over(digest, fill.temp_path, fill.written, following)
                handed = True
        except asyncio.CancelledError:
            error = FillFailed("fill cancelled")
            self._metrics.fill_failures.labels("cancelled").inc()
            raise
        except Exception as exc:
            log.warning("fill of %s failed: %s", digest, exc)
            error = exc
            reason = failure_reason(exc)
            if reason == "disk":
                self._disk.noted_full()
            self._metrics.fill_failures.labels(reason).inc()
        finally:
            if reservation is not None:
                reservation.release()  # landed (then already released) or not: no longer counted
            if error is not None:
                self._files.discard(fill.temp_path)
            # Renamed into place or handed over (if stored) in this same step: a reader that
            # arrives next finds the stored file, never a temp path that is gone.
            fill.settle(error)
            fill.on_settled()  # its bound on running fills is free from this step on
            if self._fills.get(digest) is fill:
                del self._fills[digest]
            self._leases.release(digest)
            self._metrics.upstream_bytes.labels(upstream.name).inc(fill.written)
            if isinstance(error, DigestMismatch):
                self._metrics.digest_mismatches.inc()
            if following is not None and not handed:
                await following.abort()  # after settle: its clients are not kept waiting
        if error is None:
            await self._index.add_link(upstream.name, repo, digest)
