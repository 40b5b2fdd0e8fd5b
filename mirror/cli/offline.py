"""CLI operations (stats, purge, gc, verify) against a running server or a stopped data folder."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from mirror.config import Config
from mirror.metrics import Metrics
from mirror.stores.blob_files import BlobStore
from mirror.stores.ledger import BlobUsage
from mirror.stores.metadata import Metadata
from mirror.stores.removal import BlobRemover
from mirror.upkeep.janitor import Janitor
from mirror.upkeep.purge import PurgeService
from mirror.web.app import METADATA_FILE


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
