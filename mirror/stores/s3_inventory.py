"""What blobs a shared bucket holds: every object under `{prefix}blobs/`, with its size and the
bucket's LastModified, listed page by page (ListObjectsV2, a thousand keys a request).

Eviction across replicas (upkeep/bucket_eviction.py) reads this, not any replica's index: each
replica indexes only what its own clients asked for, while the bound is on the bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

from mirror.errors import DigestInvalid
from mirror.reference import Digest
from mirror.stores.s3_blobs import S3Blobs


@dataclass(frozen=True, slots=True)
class StoredObject:
    digest: Digest
    size: int
    modified: float  # LastModified: when the object was completed, by the bucket's clock


async def stored_blobs(blobs: S3Blobs) -> list[StoredObject]:
    """Every blob object under the prefix; keys that do not name a digest are passed by (an
    object planted there is not ours to count or delete). Raises what the bucket raised."""
    prefix = f"{blobs.config.prefix}blobs/"
    found: list[StoredObject] = []
    paginator = blobs.client.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=blobs.config.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            name = item["Key"][len(prefix) :]
            try:
                digest = Digest.parse(name.replace("/", ":", 1))
            except DigestInvalid:
                continue
            if blobs.key(digest) != item["Key"]:
                continue  # e.g. upper-case hex: parsed, but not the key this digest is kept at
            found.append(StoredObject(digest, int(item["Size"]), item["LastModified"].timestamp()))
    return found
