"""Logging: one line per request (text or JSON); never a secret in a line, and never a line a
request could split or forge."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http import HttpProcessingError
from aiohttp.web import BaseRequest, Request, Response, StreamResponse

from mirror.web.appkeys import BODY_SENT, CACHE_RESULT, ROUTED
from mirror.web.middleware import route_label

ACCESS_LOGGER = "mirror.access"
SERVER_LOGGER = "aiohttp.server"
QUIET_ROUTES = frozenset({"healthz", "readyz", "metrics"})

# Control characters (C0, DEL, C1: newline, carriage return, escape, NEL…) and the unicode
# line and paragraph separators, as \xNN / \uNNNN. A path holds them after percent-decoding
# (`%0a`). The backslash is left alone, so escaping twice (the access line, then the text
# formatter) changes nothing: a literal "\x0a" in a path reads like an escaped newline, but
# neither can start a line.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))} | {
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def printable(text: str) -> str:
    """`text` on one line: every control character escaped (idempotent)."""
    return text.translate(_ESCAPES)


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
        method, path = printable(request.method), printable(request.path)
        fields = {
            "method": method,
            "path": path,
            "route": route_label(request.path),
            "status": response.status,
            "bytes": sent,
            "duration_ms": round(time * 1000, 2),
            "cache": cache or None,
            "remote": request.remote,
        }
        message = (
            f"{method} {path} {response.status} {sent}B "
            f"{time * 1000:.1f}ms{' ' + cache if cache else ''}"
        )
        # Probes and scrapes arrive every few seconds: keep them out of the info log. A request
        # aiohttp's parser refused never reached the app: MalformedRequests logged it already.
        routed = isinstance(request, Request) and request.get(ROUTED, False)
        quiet = fields["route"] in QUIET_ROUTES or not routed
        self.logger.log(logging.DEBUG if quiet else logging.INFO, message, extra={"fields": fields})


class MalformedRequests(logging.Filter):
    """aiohttp logs every request its parser refuses at ERROR, with a traceback: garbage sent
    to the port floods the log. On the `aiohttp.server` logger, this turns each such record
    into one INFO line (aiohttp's DEBUG for a first line that is not HTTP at all stays DEBUG)
    with the reason and no traceback. Any other error there, a crash, stays as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        refused = record.exc_info[1] if record.exc_info else None
        if not isinstance(refused, HttpProcessingError):
            return True
        remote = record.args[0] if isinstance(record.args, tuple) and record.args else None
        reason = refused.message.strip().splitlines()[0] if refused.message.strip() else ""
        record.msg = "malformed request from %s refused (%s): %s"
        record.args = (remote, type(refused).__name__, printable(reason.rstrip(":"))[:200])
        record.levelno = min(record.levelno, logging.INFO)
        record.levelname = logging.getLevelName(record.levelno)
        record.exc_info = record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(record.levelno)


MALFORMED_REQUESTS = MalformedRequests()


def quiet_malformed_requests() -> None:
    """Install MalformedRequests on aiohttp's server logger (once per process)."""
    logging.getLogger(SERVER_LOGGER).addFilter(MALFORMED_REQUESTS)
