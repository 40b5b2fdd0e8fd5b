"""Logging: one line per request (text or JSON); never a secret in a line."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, FileResponse, Request, StreamResponse

from mirror.http import route_label
from mirror.keys import CACHE_RESULT

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
    """Body bytes sent. sendfile bypasses aiohttp's writer, whose count then holds only the
    headers, so a file response counts what it announced."""
    if isinstance(response, FileResponse):
        sent = response.status in (200, 206) and request.method != "HEAD"
        return (response.content_length or 0) if sent else 0
    return response.body_length


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
