"""`POST /admin/import` (a bundle's tar as the body) and `POST /admin/verify-lock` (a lock).

The import reads the body as it arrives: the tar is parsed in a thread (upkeep's staging),
which pulls each chunk from the request on the event loop, so a bundle of any size passes
through a small buffer. A refused bundle answers 400 naming the digest at fault.
"""

from __future__ import annotations

import asyncio
import io
from typing import Any

from aiohttp import StreamReader, web

from mirror.errors import OperationError
from mirror.upkeep.bundle_import import BundleImporter
from mirror.upkeep.bundle_staging import BundleRefused
from mirror.upkeep.lock_check import check_lock
from mirror.upkeep.lockfile import load_lock
from mirror.web.admin_api import guarded
from mirror.web.appkeys import MIRROR

LOCK_LIMIT = 64 * 1024 * 1024
READ_CHUNK = 1024 * 1024
# One chunk of the body, at most this long in coming: a client that stalls (or a server that
# stops meanwhile) ends the worker thread instead of leaving it waiting for ever.
CHUNK_TIMEOUT = 300.0


class BodyReader(io.RawIOBase):
    """A blocking file over the request body, for a worker thread (never the loop's)."""

    def __init__(self, body: StreamReader, loop: asyncio.AbstractEventLoop) -> None:
        self._body, self._loop = body, loop

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        wanted = min(len(buffer), READ_CHUNK)
        future = asyncio.run_coroutine_threadsafe(self._body.read(wanted), self._loop)
        chunk = future.result(timeout=CHUNK_TIMEOUT)
        buffer[: len(chunk)] = chunk
        return len(chunk)


async def import_bundle(request: web.Request) -> dict[str, Any]:
    mirror = request.app[MIRROR]
    stores = mirror.stores
    importer = BundleImporter(
        stores.index, stores.files, stores.keeper, stores.ledger, mirror.config, mirror.clock
    )
    try:
        report = await importer.import_tar(BodyReader(request.content, asyncio.get_running_loop()))
    except BundleRefused:
        # Read the rest before answering: a client still sending would otherwise see its
        # connection reset instead of the answer that names the bad digest.
        while await request.content.read(READ_CHUNK):
            pass
        raise
    return {
        "images": report.images,
        "manifests": report.manifests,
        "blobs": report.blobs,
        "blobs_added": report.blobs_added,
        "bytes_added": report.bytes_added,
        "kept_newer": report.kept_newer,
        "unnamed": report.unnamed,
    }


async def verify_lock(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > LOCK_LIMIT:
        raise BundleRefused(f"a lock file is at most {LOCK_LIMIT} bytes")
    text = (await request.content.read(LOCK_LIMIT)).decode("utf-8", errors="replace")
    try:
        images = load_lock(text, "the request body")
    except OperationError as exc:
        raise BundleRefused(str(exc)) from None
    mirror = request.app[MIRROR]
    missing = await check_lock(
        mirror.stores.metadata, mirror.stores.backend.size_of, mirror.config, images
    )
    return {"images": len(images), "missing": missing}


def add_routes(app: web.Application) -> None:
    app.router.add_post("/admin/import", guarded(import_bundle))
    app.router.add_post("/admin/verify-lock", guarded(verify_lock))
