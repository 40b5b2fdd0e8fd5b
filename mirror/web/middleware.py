"""Middlewares every request passes: metrics, and OCI error bodies for every failure."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from mirror.errors import MirrorError
from mirror.web.appkeys import MIRROR, ROUTED

log = logging.getLogger(__name__)

API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_REFUSAL_CODES = {404: "NOT_FOUND", 405: "UNSUPPORTED"}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_label(path: str) -> str:
    """A bounded name for what a path is, for metrics and logs."""
    if path.startswith("/v2/"):
        if path == "/v2/":
            return "base"
        for marker, label in (("/manifests/", "manifest"), ("/blobs/", "blob")):
            if marker in path:
                return label
        return "tags" if path.endswith("/tags/list") else "other"
    if path.startswith("/admin/"):
        return "admin"
    if path in ("/metrics", "/healthz", "/readyz"):
        return path.removeprefix("/")
    return "other"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request (outermost, so it sees the final status)."""
    request[ROUTED] = True
    metrics = request.app[MIRROR].metrics
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        route = route_label(request.path)
        method = request.method if request.method in _METHODS else "other"
        metrics.http_requests.labels(route, method, str(status)).inc()
        metrics.http_duration.labels(route).observe(time.perf_counter() - started)


@web.middleware
async def oci_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure leaves as an OCI error body; an unexpected one is logged, never echoed."""
    try:
        return await handler(request)
    except MirrorError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return refusal_response(exc)
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        error = MirrorError("internal error")
        return error_response(error)


def refusal_response(refusal: web.HTTPException) -> web.Response:
    """aiohttp's own refusals (no route matched, a body too large, ...) as OCI error bodies too,
    with their status and Allow header; aiohttp would answer them in text/plain."""
    code = _REFUSAL_CODES.get(refusal.status, "UNKNOWN")
    error = {"code": code, "message": refusal.reason, "detail": None}
    response = _oci_response(refusal.status, json.dumps({"errors": [error]}).encode())
    if "Allow" in refusal.headers:
        response.headers["Allow"] = refusal.headers["Allow"]
    return response


def error_response(error: MirrorError) -> web.Response:
    return _oci_response(error.status, error.body())


def _oci_response(status: int, body: bytes) -> web.Response:
    response = web.Response(status=status, body=body, content_type="application/json")
    response.headers[API_VERSION[0]] = API_VERSION[1]
    return response
