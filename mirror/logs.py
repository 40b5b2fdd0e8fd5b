"""Logging: one line per request (text or JSON); never a secret in a line."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, Request, Response, StreamResponse

from mirror.http import route_label
from mirror.keys import BODY_SENT, CACHE_RESULT

ACCESS_LOGGER = "mirror.access"
QUIET_ROUTES = frozenset({"healthz", "readyz", "metrics"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def body_bytes(request: BaseRequest, response: StreamResponse) -> int:
    """Body bytes sent (aiohttp's body_length counts headers too, and misses sendfile)."""
    if isinstance(request, Request) and BODY_SENT in request:
        return request[BODY_SENT]  # a streamed fill counts what it really wrote
    if request.method == "HEAD" or response.status in (204, 304, 416):
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
