"""The application factory: builds the services, opens and closes their resources."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from mirror.config import Config
from mirror.metrics import Metrics
from mirror.services.blobs import BlobService
from mirror.services.manifests import ManifestService
from mirror.services.tag_lists import TagListService
from mirror.stores.blob_files import BlobStore
from mirror.stores.ledger import BlobUsage
from mirror.stores.metadata import Metadata
from mirror.stores.removal import BlobRemover
from mirror.upkeep.janitor import Janitor
from mirror.upkeep.purge import PurgeService
from mirror.upstream.client import UpstreamRegistry
from mirror.upstream.router import UpstreamRouter
from mirror.web import admin_api, health, middleware, registry_api
from mirror.web.appkeys import (
    BLOBS,
    CONFIG,
    JANITOR,
    MANIFESTS,
    METADATA,
    METRICS,
    PURGE,
    ROUTER,
    TAGS,
    USAGE,
)

METADATA_FILE = "mirror.db"


def create_app(config: Config, clock: Callable[[], float] | None = None) -> web.Application:
    """Nothing here does I/O; resources open when the app starts (cleanup_ctx)."""
    now = clock or time.time
    metrics = Metrics()
    metadata = Metadata(config.storage.path / METADATA_FILE)
    store = BlobStore(config.storage.path)
    usage = BlobUsage(config.storage.max_size)
    upstreams = [UpstreamRegistry(upstream, now, metrics) for upstream in config.upstreams]
    manifests = ManifestService(metadata, now, lambda up: config.tag_ttl_for(up.config), metrics)
    blobs = BlobService(store, metadata, usage, metrics, now)
    remover = BlobRemover(metadata, store, usage)
    janitor = Janitor(metadata, store, usage, config.storage, metrics, now, remover)
    metrics.storage_bytes.set_function(lambda: usage.bytes)
    metrics.storage_blobs.set_function(lambda: usage.blobs)
    metrics.storage_limit.set(config.storage.max_size)

    app = web.Application(middlewares=[middleware.observe, middleware.oci_errors])
    app[CONFIG] = config
    app[METRICS] = metrics
    app[METADATA] = metadata
    app[USAGE] = usage
    app[ROUTER] = UpstreamRouter(upstreams)
    app[MANIFESTS] = manifests
    app[BLOBS] = blobs
    app[TAGS] = TagListService(metadata, metrics)
    app[JANITOR] = janitor
    app[PURGE] = PurgeService(metadata, remover)
    registry_api.add_routes(app)
    admin_api.add_routes(app)
    health.add_routes(app)

    async def resources(_: web.Application) -> AsyncIterator[None]:
        store.open()
        await metadata.open()
        await janitor.start()  # sweeps temp files, reconciles rows and files, then runs
        # Sessions are created here, but no upstream is contacted until a client asks.
        for upstream in upstreams:
            await upstream.start()
        try:
            yield
        finally:
            await blobs.close()
            await manifests.close()
            for upstream in upstreams:
                await upstream.close()
            await janitor.close()
            await metadata.close()

    app.cleanup_ctx.append(resources)
    return app
