"""The application factory: builds the services, opens and closes their resources."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from mirror import admin, health, http
from mirror.blobs import BlobService
from mirror.blobstore import BlobStore
from mirror.config import Config
from mirror.janitor import Janitor
from mirror.keys import (
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
from mirror.manifests import ManifestService
from mirror.metadata import Metadata
from mirror.metrics import Metrics
from mirror.purge import PurgeService
from mirror.removal import BlobRemover
from mirror.routing import UpstreamRouter
from mirror.tags import TagListService
from mirror.upstream import UpstreamRegistry
from mirror.usage import BlobUsage

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

    app = web.Application(middlewares=[http.observe, http.oci_errors])
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
    http.add_routes(app)
    admin.add_routes(app)
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
