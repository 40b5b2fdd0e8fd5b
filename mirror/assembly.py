"""The composition root: every part of a mirror built once from its Config, and their lifetimes.

The server (web.app) and the offline commands (cli.offline) both build their parts here, so
the wiring exists once. Each resource has a lifetime of its own (an async context manager):
the server registers each as one aiohttp cleanup_ctx, the command line enters them in an
AsyncExitStack, and either way a resource that failed to open closes the ones opened before.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from functools import partial

from mirror.config import Config
from mirror.errors import OperationError
from mirror.metrics import Metrics
from mirror.services.blobs import BlobService
from mirror.services.fill_limits import FillLimits
from mirror.services.manifests import ManifestService
from mirror.services.tag_lists import TagListService
from mirror.stores.blob_backend import BlobBackend, FilesystemBackend
from mirror.stores.blob_files import BlobFiles
from mirror.stores.blob_keeper import BlobKeeper
from mirror.stores.catalog import Catalog
from mirror.stores.disk_space import DiskSpace
from mirror.stores.folder_lock import FolderLock, unusable_folder
from mirror.stores.leases import BlobLeases
from mirror.stores.ledger import UsageLedger
from mirror.stores.metadata import Metadata
from mirror.stores.pins import Pins
from mirror.stores.s3_blobs import S3Blobs
from mirror.stores.s3_records import S3Records
from mirror.stores.shared_index import SharedIndex
from mirror.stores.shared_records import LocalOnly, SharedRecords
from mirror.stores.sweep import Sweeper
from mirror.upkeep.bucket_upkeep import bucket_upkeep
from mirror.upkeep.janitor import Janitor
from mirror.upkeep.jobs import JobRegistry
from mirror.upkeep.purge import PurgeService
from mirror.upkeep.retention import Retention
from mirror.upstream.client import UpstreamRegistry
from mirror.upstream.router import UpstreamRouter

METADATA_FILE = "mirror.db"

Clock = Callable[[], float]
Lifetime = Callable[[], AbstractAsyncContextManager[None]]


@dataclass(frozen=True, slots=True)
class Stores:
    """The local side: the folder's lock, the index, the blob files, and what is known of them
    in memory."""

    lock: FolderLock
    metadata: Metadata
    files: BlobFiles  # the local folder: fills' temp files, and blobs with the filesystem backend
    backend: BlobBackend  # where verified blobs live
    ledger: UsageLedger
    leases: BlobLeases
    keeper: BlobKeeper
    disk: DiskSpace
    catalog: Catalog  # read-only views over the index (admin catalog, `mirror ls`)
    index: SharedIndex  # the index with the bucket's tag records, manifests and links behind it


@dataclass(frozen=True, slots=True)
class Upkeep:
    janitor: Janitor
    purge: PurgeService
    jobs: JobRegistry  # the admin API's long work, watched by polling


@dataclass(frozen=True, slots=True)
class Mirror:
    """Everything a serving mirror is made of."""

    config: Config
    metrics: Metrics
    stores: Stores
    upkeep: Upkeep
    router: UpstreamRouter
    manifests: ManifestService
    blobs: BlobService
    tag_lists: TagListService
    clock: Clock  # time.time, or a test's clock: every service and admin action reads this one

    def lifetimes(self) -> list[Lifetime]:
        """Opened in this order, closed in reverse. Nothing contacts an upstream until a
        client asks."""
        return [
            lambda: _owner(self.stores.lock, create=True),  # before anything touches the folder
            lambda: _database(self.stores),
            lambda: _janitor(self.upkeep.janitor),  # reconciles rows and files, then runs
            lambda: _upstreams(self.router),
            lambda: _services(self),
            # Last opened, first closed: a running verify or purge ends before what it uses.
            lambda: _jobs(self.upkeep.jobs),
        ]


def build_stores(config: Config, metrics: Metrics) -> Stores:
    lock = FolderLock(config.storage.path)
    disk = DiskSpace(config.storage.path)
    metadata = Metadata(config.storage.path / METADATA_FILE, disk)
    files = BlobFiles(config.storage.path)
    backend: BlobBackend
    records: SharedRecords
    if config.storage.s3 is None:
        backend, records = FilesystemBackend(files), LocalOnly()
    else:
        bucket = S3Blobs(config.storage.s3, metrics.bucket)
        backend, records = bucket, S3Records(bucket)
    ledger = UsageLedger(
        config.storage.max_size, config.storage.low_water, bounds_here=backend.local
    )
    leases = BlobLeases()
    pins = pins_of(config)
    # Asked at each eviction: pins come from the config, locked tags from bundle imports.
    pinned = partial(Sweeper(metadata).pinned, pins)
    keeper = BlobKeeper(metadata, files, ledger, leases, metrics, pinned=pinned, backend=backend)
    metrics.storage_full.set_function(lambda: float(disk.full))
    catalog = Catalog(metadata.database)
    index = SharedIndex(metadata, records)
    return Stores(lock, metadata, files, backend, ledger, leases, keeper, disk, catalog, index)


def pins_of(config: Config) -> Pins:
    hub = [upstream.name for upstream in config.upstreams if upstream.is_docker_hub]
    return Pins(config.storage.pinned, hub)


def build_upkeep(
    config: Config, stores: Stores, metrics: Metrics, clock: Clock = time.time
) -> Upkeep:
    sweeper = Sweeper(stores.metadata)
    shared, eviction = None, None
    if isinstance(stores.backend, S3Blobs):
        pinned = partial(sweeper.pinned, pins_of(config))
        shared, eviction = bucket_upkeep(
            stores.backend,
            config.storage,
            stores.metadata,
            stores.keeper,
            stores.leases,
            pinned,
            metrics,
            clock,
        )
    retention = Retention(
        sweeper,
        stores.keeper,
        stores.index,
        pins_of(config),
        config.storage.max_unused_age,
        clock,
        metrics,
        shared,
    )
    janitor = Janitor(
        stores.metadata,
        stores.files,
        stores.keeper,
        stores.ledger,
        stores.leases,
        stores.disk,
        config.storage,
        retention,
        eviction,
    )
    purge = PurgeService(stores.index, stores.keeper, stores.leases, sweeper, metrics)
    return Upkeep(janitor, purge, JobRegistry(clock))


def assemble(config: Config, clock: Clock | None = None) -> Mirror:
    """Build a serving mirror; nothing here does I/O."""
    now = clock or time.time
    metrics = Metrics()
    stores = build_stores(config, metrics)
    upkeep = build_upkeep(config, stores, metrics, now)
    router = UpstreamRouter([UpstreamRegistry(up, now, metrics) for up in config.upstreams])
    manifests = ManifestService(
        stores.index, now, lambda up: config.tag_ttl_for(up.config), metrics
    )
    blobs = BlobService(
        stores.files,
        stores.index,
        stores.keeper,
        stores.ledger,
        stores.leases,
        stores.disk,
        metrics,
        now,
        FillLimits(config.cache.max_concurrent_fills, config.cache.max_fills_per_client, metrics),
        config.cache.fetch_unreferenced_blobs,
        redirect=config.storage.s3 is not None and config.storage.s3.redirect,
    )
    metrics.storage_bytes.set_function(lambda: stores.ledger.bytes)
    metrics.storage_blobs.set_function(lambda: stores.ledger.blobs)
    metrics.storage_limit.set(config.storage.max_size)
    metrics.storage_shared.set(0 if stores.backend.local else 1)
    tag_lists = TagListService(stores.index, metrics)
    return Mirror(config, metrics, stores, upkeep, router, manifests, blobs, tag_lists, now)


@dataclass(frozen=True, slots=True)
class DataFolder:
    """The parts of a stopped mirror that the offline commands use."""

    stores: Stores
    upkeep: Upkeep


@asynccontextmanager
async def open_data_folder(config: Config) -> AsyncIterator[DataFolder]:
    """Open a stopped mirror's data folder (never creates one). It is locked while open: a
    running mirror's folder is refused (DataFolderLocked), and none starts on it meanwhile."""
    root = config.storage.path
    if not (root / METADATA_FILE).exists():
        raise OperationError(f"{root} holds no mirror data ({METADATA_FILE} is missing)")
    metrics = Metrics()
    stores = build_stores(config, metrics)
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(_owner(stores.lock, create=False))
        await stack.enter_async_context(_database(stores))
        rows = await stores.metadata.blob_rows()
        stores.ledger.reset(sum(row.size for row in rows), len(rows))
        yield DataFolder(stores, build_upkeep(config, stores, metrics))


@asynccontextmanager
async def _owner(lock: FolderLock, *, create: bool) -> AsyncIterator[None]:
    """The data folder's lock, held while everything else is open (DataFolderLocked or
    DataFolderUnusable when it cannot be had)."""
    lock.acquire(create=create)
    try:
        yield
    finally:
        lock.release()


@asynccontextmanager
async def _database(stores: Stores) -> AsyncIterator[None]:
    """The blob folders and the index. A file-system or SQLite failure, or an index from a
    newer mirror (SchemaTooNew), is a StartupError; the connection is closed either way."""
    try:
        with unusable_folder(stores.lock.root):
            stores.files.open()
            await stores.metadata.open()
        await stores.backend.start()
    except BaseException:
        await stores.backend.close()
        await stores.metadata.close()
        raise
    try:
        yield
    finally:
        await stores.index.records.close()  # on the backend's client: closed before it
        await stores.backend.close()  # deletes in flight finish before the index closes
        await stores.metadata.close()


@asynccontextmanager
async def _janitor(janitor: Janitor) -> AsyncIterator[None]:
    await janitor.start()
    try:
        yield
    finally:
        await janitor.close()


@asynccontextmanager
async def _upstreams(router: UpstreamRouter) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        for upstream in router.upstreams:
            await upstream.start()
            stack.push_async_callback(upstream.close)
        yield


@asynccontextmanager
async def _jobs(jobs: JobRegistry) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await jobs.close()


@asynccontextmanager
async def _services(mirror: Mirror) -> AsyncIterator[None]:
    """Running fills and resolutions are cancelled and awaited before anything below closes."""
    try:
        yield
    finally:
        await mirror.blobs.close()
        await mirror.manifests.close()
        await mirror.tag_lists.close()
