"""Objects under a key prefix of the bucket, removed in batches: the records a purge names, or
everything under a folder page by page as it is listed (a purge of everything)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mirror.stores.s3_parts import ERRORS

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef

log = logging.getLogger(__name__)

DELETE_BATCH = 1000  # S3's limit for one DeleteObjects

# Of a page of listed keys, those to leave in the bucket.
Spare = Callable[[list[str]], Awaitable[set[str]]]


async def delete_keys(client: S3Client, bucket: str, keys: list[str]) -> bool:
    """Remove the keys; False (logged) when the bucket did not remove them all."""
    removed = True
    for start in range(0, len(keys), DELETE_BATCH):
        batch: list[ObjectIdentifierTypeDef] = [
            {"Key": key} for key in keys[start : start + DELETE_BATCH]
        ]
        try:
            answer = await client.delete_objects(
                Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
            )
        except ERRORS as exc:
            log.warning("could not remove %d objects from the bucket: %s", len(batch), exc)
            removed = False
            continue
        for error in answer.get("Errors", []):
            log.warning("could not remove %s from the bucket: %s", error.get("Key"), error)
            removed = False
    return removed


async def empty_folder(
    client: S3Client, bucket: str, folder: str, spare: Spare | None = None
) -> bool:
    """Remove every object whose key starts with `folder`, but those `spare` keeps; False
    (logged) when the listing or a removal failed (what is left is listed again next time)."""
    removed = True
    paginator = client.get_paginator("list_objects_v2")
    try:
        # Each page is removed before the next is asked for: S3 lists after the last key
        # returned, so removing what was listed does not shift the listing.
        async for page in paginator.paginate(Bucket=bucket, Prefix=folder):
            keys = [item["Key"] for item in page.get("Contents", [])]
            if spare is not None and keys:
                kept = await spare(keys)
                keys = [key for key in keys if key not in kept]
            if not await delete_keys(client, bucket, keys):
                removed = False
    except ERRORS as exc:
        log.warning("could not list %s in the bucket: %s", folder, exc)
        return False
    return removed
