"""What a replica on a shared bucket runs to remove from it, built from `[storage]`: the usage
exchange and grace (bucket_retention.py) when retention or a bound is set, and the bucket-wide
eviction (bucket_eviction.py) when a bound is."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from mirror.config import StorageConfig
from mirror.metrics import Metrics
from mirror.stores.blob_keeper import BlobKeeper, PinnedContent
from mirror.stores.doomed import DoomedObjects
from mirror.stores.leases import BlobLeases
from mirror.stores.metadata import Metadata
from mirror.stores.s3_blobs import S3Blobs
from mirror.stores.s3_inventory import stored_blobs
from mirror.stores.s3_usage import S3UsageBoard
from mirror.upkeep.bucket_eviction import EVICTION_WINDOW, BucketEviction
from mirror.upkeep.bucket_retention import BucketRetention


def bucket_upkeep(
    bucket: S3Blobs,
    storage: StorageConfig,
    metadata: Metadata,
    keeper: BlobKeeper,
    leases: BlobLeases,
    pinned: PinnedContent,
    metrics: Metrics,
    clock: Callable[[], float],
) -> tuple[BucketRetention | None, BucketEviction | None]:
    """None for what the config leaves off (no report is written without either)."""
    if storage.max_unused_age <= 0 and storage.max_size <= 0:
        return None, None
    doomed = DoomedObjects(metadata.database)
    shared = BucketRetention(
        metadata,
        S3UsageBoard(bucket, storage.path, evicts=storage.max_size > 0),
        doomed,
        keeper,
        leases,
        bucket.config.delete_grace,
        metrics.bucket,
        pinned=pinned,
    )
    if storage.max_size <= 0:
        return shared, None
    eviction = BucketEviction(
        shared,
        partial(stored_blobs, bucket),
        doomed,
        keeper,
        leases,
        max_size=storage.max_size,
        low_water=storage.low_water,
        window=storage.max_unused_age or EVICTION_WINDOW,
        clock=clock,
        metrics=metrics,
    )
    return shared, eviction
