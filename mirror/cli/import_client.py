"""A bundle or a lock sent to a running mirror's admin API (urllib: the body is streamed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from mirror.errors import OperationError
from mirror.upkeep.bundle_staging import directory_tar

TIMEOUT = 3600.0  # the server answers once the last byte is checked and committed


def post_bundle(server: str, token: str | None, bundle: Path) -> dict[str, Any]:
    """A tar is sent as it is; a layout directory as a tar made while sending."""
    headers = {"Content-Type": "application/x-tar"}
    if bundle.is_dir():
        return _post(server, token, "/admin/import", directory_tar(bundle), headers)
    headers["Content-Length"] = str(bundle.stat().st_size)
    with bundle.open("rb") as body:
        return _post(server, token, "/admin/import", body, headers)


def post_lock(server: str, token: str | None, text: str) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    return _post(server, token, "/admin/verify-lock", text.encode(), headers)


def _post(
    server: str,
    token: str | None,
    path: str,
    body: bytes | IO[bytes] | Iterable[bytes],
    headers: dict[str, str],
) -> dict[str, Any]:
    request = urllib.request.Request(
        server.rstrip("/") + path, data=body, method="POST", headers=headers
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as exc:
        raise OperationError(f"{server} answered {exc.code}: {_error_message(exc)}") from None
    except urllib.error.URLError as exc:
        raise OperationError(f"cannot reach {server}: {exc.reason}") from None
    except (ValueError, OSError) as exc:
        raise OperationError(f"{server} answered badly: {exc}") from None
    if not isinstance(answer, dict):
        raise OperationError(f"{server} answered something other than a JSON object")
    return answer


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc)["errors"][0]["message"])
    except (ValueError, KeyError, IndexError, TypeError):
        return exc.reason
