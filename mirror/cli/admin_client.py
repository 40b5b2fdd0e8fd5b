"""A running mirror's admin API, called from the command line (urllib: no event loop needed)."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlencode

from mirror.errors import OperationError


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


def admin_call(args: argparse.Namespace) -> tuple[str, str, dict[str, str]]:
    """The admin API call (method, path, query) that does what a command line asks."""
    if args.command == "stats":
        return "GET", "/admin/stats", {}
    if args.command in ("gc", "verify"):
        return "POST", f"/admin/{args.command}", {}
    query = {"dry_run": "1"} if args.dry_run else {}
    if args.upstream:
        query["upstream"] = args.upstream
    if args.all:
        return "DELETE", "/admin/cache", query
    if args.blob:
        return "DELETE", f"/admin/blobs/{args.blob}", query
    if args.manifest:
        return "DELETE", f"/admin/manifests/{args.manifest}", query
    if args.tag:
        query["tag"] = args.tag
    return "DELETE", f"/admin/cache/{args.repository}", query
