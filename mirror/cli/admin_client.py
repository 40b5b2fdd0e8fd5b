"""A running mirror's admin API, called from the command line (urllib: no event loop needed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from mirror.cli.offline import OperationError


def call_server(
    server: str, token: str | None, method: str, path: str, query: dict[str, str]
) -> dict[str, Any]:
    """One admin API call; raises OperationError with the server's message on failure."""
    url = server.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
    request = urllib.request.Request(url, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=3600) as response:
            result: dict[str, Any] = json.load(response)
            return result
    except urllib.error.HTTPError as exc:
        raise OperationError(f"{server} answered {exc.code}: {_error_message(exc)}") from None
    except urllib.error.URLError as exc:
        raise OperationError(f"cannot reach {server}: {exc.reason}") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc)["errors"][0]["message"])
    except (ValueError, KeyError, IndexError, TypeError):
        return exc.reason
