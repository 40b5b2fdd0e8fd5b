"""The application factory: builds the services, opens and closes their resources."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from mirror.blobs import BlobService
from mirror.blobstore import BlobStore
from mirror.config import Config
from mirror.http import add_routes, oci_errors
from mirror.keys import BLOBS, MANIFESTS, ROUTER, TAGS
from mirror.manifests import ManifestService
from mirror.metadata import Metadata
from mirror.routing import UpstreamRouter
from mirror.tags import TagListService
from mirror.upstream import UpstreamRegistry

METADATA_FILE = "mirror.db"


def create_app(config: Config, clock: Callable[[], float] | None = None) -> web.Application:
    """Nothing here does I/O; resources open when the app starts (cleanup_ctx)."""
    now = clock or time.time
    metadata = Metadata(config.storage.path / METADATA_FILE)
    store = BlobStore(config.storage.path)
    upstreams = [UpstreamRegistry(upstream, now) for upstream in config.upstreams]
    manifests = ManifestService(metadata, now, lambda up: config.tag_ttl_for(up.config))
    blobs = BlobService(store, metadata, now)

    app = web.Application(middlewares=[oci_errors])
    app[ROUTER] = UpstreamRouter(upstreams)
    app[MANIFESTS] = manifests
    app[BLOBS] = blobs
    app[TAGS] = TagListService(metadata)
    add_routes(app)

    async def resources(_: web.Application) -> AsyncIterator[None]:
        store.open()
        store.sweep_temps()
        await metadata.open()
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
            await metadata.close()

    app.cleanup_ctx.append(resources)
    return app
