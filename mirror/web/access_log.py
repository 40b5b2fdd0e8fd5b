"""Logging: one line per request (text or JSON); never a secret in a line."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, Request, Response, StreamResponse

from mirror.web.appkeys import BODY_SENT, CACHE_RESULT
from mirror.web.middleware import route_label

ACCESS_LOGGER = "mirror.access"
QUIET_ROUTES = frozenset({"healthz", "readyz", "metrics"})


def body_bytes(request: BaseRequest, response: StreamResponse) -> int:
    """Body bytes sent (aiohttp's body_length counts headers too, and misses sendfile)."""
    if isinstance(request, Request) and BODY_SENT in request:
        return request[BODY_SENT]  # a streamed fill counts what it really wrote
    if request.method == "HEAD" or response.status in (204, 304):
        return 0
    if isinstance(response, Response) and isinstance(response.body, bytes):
        return len(response.body)
    return response.content_length or 0


class AccessLogger(AbstractAccessLogger):
    """Method, path, status, bytes, duration and cache result; headers are never logged,
    so an Authorization header cannot leak into a line."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        cache = request.get(CACHE_RESULT, "") if isinstance(request, Request) else ""
        sent = body_bytes(request, response)
        fields = {
            "method": request.method,
            "path": request.path,
            "route": route_label(request.path),
            "status": response.status,
            "bytes": sent,
            "duration_ms": round(time * 1000, 2),
            "cache": cache or None,
            "remote": request.remote,
        }
        message = (
            f"{request.method} {request.path} {response.status} {sent}B "
            f"{time * 1000:.1f}ms{' ' + cache if cache else ''}"
        )
        # Probes and scrapes arrive every few seconds: keep them out of the info log.
        level = logging.DEBUG if fields["route"] in QUIET_ROUTES else logging.INFO
        self.logger.log(level, message, extra={"fields": fields})
