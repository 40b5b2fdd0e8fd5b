"""Middlewares every request passes: metrics, and OCI error bodies for every failure; and for the
requests no middleware sees, those aiohttp's HTTP parser refuses, OCIAppRunner."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

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
    response = _refusal(refusal.status, refusal.reason, None)
    if "Allow" in refusal.headers:
        response.headers["Allow"] = refusal.headers["Allow"]
    return response


def _refusal(status: int, message: str, detail: str | None) -> web.Response:
    error = {"code": _REFUSAL_CODES.get(status, "UNKNOWN"), "message": message, "detail": detail}
    return _oci_response(status, json.dumps({"errors": [error]}).encode())


def error_response(error: MirrorError) -> web.Response:
    response = _oci_response(error.status, error.body())
    response.headers.update(error.headers())
    return response


def _oci_response(status: int, body: bytes) -> web.Response:
    response = web.Response(status=status, body=body, content_type="application/json")
    response.headers[API_VERSION[0]] = API_VERSION[1]
    return response


# -- what aiohttp answers itself --------------------------------------------------------------
# A request line or header aiohttp's parser refuses (a raw control byte, a bad header, a line
# over the limit) never reaches the app, so no middleware sees it: RequestHandler.handle_error
# answers it, in text/plain, on the connection's protocol object (as it does for an exception
# that escapes every middleware). aiohttp 3.14 has no hook for that answer: neither Server nor
# AppRunner takes a handler class. So the three classes below are the smallest subclassing that
# reaches it: the protocol object's handle_error, the Server that makes those objects, and the
# runner that makes the Server.


class OCIRequestHandler(RequestHandler):
    """Answers aiohttp's own errors as OCI error bodies. The request's path is not known (the
    parser refused it), so every such answer is one, not only those under /v2/."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own first: it logs the refusal (access_log.MalformedRequests makes that one
        # INFO line) and raises ConnectionError when a response has already begun.
        super().handle_error(request, status, exc, message)
        if status >= 500:  # the message is aiohttp's canned text, or a traceback in debug
            response = _refusal(status, HTTPStatus(status).phrase, None)
        else:
            # The parser's reason, up to its first colon: what follows is the refused bytes.
            reason = (message or "").strip().split("\n", 1)[0].split(":", 1)[0][:200]
            response = _refusal(status, "malformed HTTP request", reason or None)
        response.force_close()  # the parser's state is unknown after a refusal
        return response


class OCIServer(web.Server):
    def __call__(self) -> RequestHandler:
        return OCIRequestHandler(self, loop=self._loop, **self._kwargs)


class OCIAppRunner(web.AppRunner):
    """web.AppRunner whose connections answer aiohttp's own errors as OCI error bodies."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # the app's start-up, and its Server, as aiohttp does
        return OCIServer(
            made.request_handler,
            request_factory=made.request_factory,
            handler_cancellation=made.handler_cancellation,
            **made._kwargs,
        )
