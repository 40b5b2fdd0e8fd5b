"""A running mirror's admin API, called from the command line (urllib: no event loop needed).

Long work (verify, gc, purge of everything) is started as a job and polled, so that a reverse
proxy's timeout on one long request cannot cut it; a server that predates jobs answers the
request itself, and that answer is used as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from mirror.errors import OperationError

CALL_TIMEOUT = 3600.0  # a synchronous call does the whole work within the request
POLL_TIMEOUT = 60.0  # one look at a job answers at once
POLL_FIRST = 0.05  # a short job is seen finished without a half-second wait...
POLL_EVERY = 0.5  # ...and a long one is not asked more often than this

Progress = Callable[[int, int], None]


def call_server(
    server: str,
    token: str | None,
    method: str,
    path: str,
    query: dict[str, str],
    *,
    as_job: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One admin API call, its result; with `as_job`, the result of the job it started, watched
    until it ends. Raises OperationError with the server's message on failure."""
    url = server.rstrip("/") + path + (f"?{urlencode(query)}" if query else "")
    headers = {"Prefer": "respond-async"} if as_job else {}
    status, answer = _request(server, token, method, url, headers, CALL_TIMEOUT)
    if status != 202:
        return answer
    return _watch(server, token, answer, progress)


def _watch(
    server: str, token: str | None, job: dict[str, Any], progress: Progress | None
) -> dict[str, Any]:
    job_id = job.get("id")
    if not isinstance(job_id, str):
        raise OperationError(f"{server} answered 202 without a job id")
    url = f"{server.rstrip('/')}/admin/jobs/{quote(job_id, safe='')}"
    delay, shown = POLL_FIRST, (0, 0)
    try:
        while job.get("state") == "running":
            time.sleep(delay)
            delay = min(delay * 2, POLL_EVERY)
            _, job = _request(server, token, "GET", url, {}, POLL_TIMEOUT)
            counts = job.get("progress") or {}
            done, total = counts.get("done"), counts.get("total")
            if not (isinstance(done, int) and isinstance(total, int)):
                continue  # not known yet
            if progress is not None and (done, total) != shown:
                shown = (done, total)
                progress(done, total)
    except KeyboardInterrupt:
        # Ctrl-C ends the watching only: say where the job that goes on can be followed.
        print(file=sys.stderr)
        raise OperationError(f"stopped watching; the job goes on: {url}") from None
    if progress is not None and shown[0] < shown[1]:
        progress(shown[1], shown[1])  # ended; ends the bar's line before the result is printed
    if job.get("state") == "succeeded" and isinstance(job.get("result"), dict):
        result: dict[str, Any] = job["result"]
        return result
    raise OperationError(f"{job.get('kind', 'the')} job {job_id} failed: {job.get('error')}")


def _request(
    server: str,
    token: str | None,
    method: str,
    url: str,
    headers: dict[str, str],
    timeout: float,
) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, method=method, headers=headers)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            answer = json.load(response)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        raise OperationError(f"{server} answered {exc.code}: {_error_message(exc)}") from None
    except urllib.error.URLError as exc:
        raise OperationError(f"cannot reach {server}: {exc.reason}") from None
    except (ValueError, OSError) as exc:  # not JSON, or the connection broke mid-answer
        raise OperationError(f"{server} answered badly: {exc}") from None
    if not isinstance(answer, dict):
        raise OperationError(f"{server} answered something other than a JSON object")
    return status, answer


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.load(exc)["errors"][0]["message"])
    except (ValueError, KeyError, IndexError, TypeError):
        return exc.reason


def is_long(args: argparse.Namespace) -> bool:
    """The commands whose work can outlast a proxy's timeout: run as jobs on the server."""
    return args.command in ("gc", "verify") or (args.command == "purge" and args.all)


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
