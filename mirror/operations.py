"""CLI operations (stats, purge, gc, verify) against a running server or a stopped data folder."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from mirror.app import METADATA_FILE
from mirror.blobstore import BlobStore
from mirror.config import Config
from mirror.janitor import Janitor
from mirror.metadata import Metadata
from mirror.metrics import Metrics
from mirror.purge import PurgeService
from mirror.removal import BlobRemover
from mirror.usage import BlobUsage


class OperationError(Exception):
    """A one-line reason the operation could not be done."""


@dataclass(frozen=True, slots=True)
class DataFolder:
    """The stores of a stopped mirror, opened directly."""

    metadata: Metadata
    store: BlobStore
    usage: BlobUsage
    janitor: Janitor
    purge: PurgeService


@asynccontextmanager
async def open_data(config: Config) -> AsyncIterator[DataFolder]:
    root = config.storage.path
    if not (root / METADATA_FILE).exists():
        raise OperationError(f"{root} holds no mirror data ({METADATA_FILE} is missing)")
    metadata = Metadata(root / METADATA_FILE)
    store = BlobStore(root)
    usage = BlobUsage(config.storage.max_size)
    remover = BlobRemover(metadata, store, usage)
    janitor = Janitor(metadata, store, usage, config.storage, Metrics(), time.time, remover)
    await metadata.open()
    try:
        usage.reset(*await _totals(metadata))
        yield DataFolder(metadata, store, usage, janitor, PurgeService(metadata, remover))
    finally:
        await metadata.close()


async def _totals(metadata: Metadata) -> tuple[int, int]:
    rows = await metadata.blob_rows()
    return sum(size for _, size in rows), len(rows)


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


def progress_printer() -> Callable[[int, int], None] | None:
    """A one-line progress bar (on stderr, so stdout stays JSON) when stdout is a terminal."""
    if not sys.stdout.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "-" * (width - filled)
        end = "\n" if done >= total else ""
        print(f"\r[{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show
