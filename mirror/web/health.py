"""Liveness, readiness and the Prometheus scrape endpoint."""

from __future__ import annotations

import os

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from mirror.web.appkeys import MIRROR


async def healthz(request: web.Request) -> web.Response:
    """The process is up and its event loop answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """The database and the store are usable; deliberately not the upstream (we serve stale)."""
    problems = []
    try:
        await request.app[MIRROR].stores.metadata.ping()
    except Exception as exc:
        problems.append(f"database: {type(exc).__name__}")
    problem = await request.app[MIRROR].stores.keeper.backend.check()
    if problem is not None:
        problems.append(f"store: {problem}")
    root = request.app[MIRROR].config.storage.path
    for folder in (root / "blobs", root / "tmp"):
        if not os.access(folder, os.W_OK):
            problems.append(f"store: {folder.name}/ is not writable")
    if problems:
        return web.json_response({"status": "unready", "problems": problems}, status=503)
    if request.app[MIRROR].stores.disk.full:
        # Still ready: hits are served from a full disk; only new content is not stored.
        warning = "storage: the disk is full; new content is served but not stored"
        return web.json_response({"status": "degraded", "warnings": [warning]})
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[MIRROR].metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
