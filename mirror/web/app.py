"""The application factory: the assembled mirror, its routes, and one cleanup_ctx per resource."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from mirror.assembly import Clock, Lifetime, assemble
from mirror.config import Config
from mirror.web import (
    admin_api,
    admin_catalog,
    admin_import,
    health,
    middleware,
    registry_api,
)
from mirror.web.access_log import quiet_malformed_requests
from mirror.web.appkeys import GATE, MIRROR
from mirror.web.gate import PullGate


def create_app(config: Config, clock: Clock | None = None) -> web.Application:
    """Nothing here does I/O; resources open when the app starts, in order, and close in
    reverse: if one fails to open, the ones before it still close."""
    mirror = assemble(config, clock)
    quiet_malformed_requests()
    gate = PullGate(config)  # reads the htpasswd file now: a bad one stops the start
    middlewares = [middleware.observe, middleware.oci_errors]
    if gate.active:  # with nothing to enforce, a cache hit does not pay for the check
        middlewares.append(gate.middleware)
    app = web.Application(middlewares=middlewares)
    app[MIRROR] = mirror
    app[GATE] = gate
    registry_api.add_routes(app)
    admin_api.add_routes(app)
    admin_catalog.add_routes(app)
    admin_import.add_routes(app)  # bundles and locks (docs/airgapped.md)
    health.add_routes(app)
    for lifetime in mirror.lifetimes():
        app.cleanup_ctx.append(_cleanup_ctx(lifetime))
    return app


def _cleanup_ctx(lifetime: Lifetime) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(_: web.Application) -> AsyncIterator[None]:
        async with lifetime():
            yield

    return run
