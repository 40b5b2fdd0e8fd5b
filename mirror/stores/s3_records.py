"""Tag records, manifests and repository links in the bucket, beside the blobs (s3_blobs.py).

    {prefix}manifests/<alg>/<hex>                                the manifest's exact bytes,
                                                                 Content-Type its media type
    {prefix}repositories/<upstream>/<repo>/_tags/<tag>           {"digest", "media_type",
                                                                 "resolved_at"} (JSON)
    {prefix}repositories/<upstream>/<repo>/_links/<alg>/<hex>    empty: the upstream vouched
                                                                 that repo holds the digest

No repository path component starts with "_" (reference.py), so `_tags` and `_links` cannot
collide with a nested repository's name. The bucket is written by every replica and read as
untrusted: a manifest is served only if its bytes match the digest of its key, a record that
does not parse is no record. The records are a cache like the rest: a bucket that does not
answer makes a replica fall back on its own index and the upstream, with a warning.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from mirror.reference import Digest
from mirror.stores.records import StoredManifest, TagRow
from mirror.stores.s3_blobs import S3Blobs, missing
from mirror.stores.s3_parts import ERRORS
from mirror.stores.shared_records import LinkKey, TagKey

if TYPE_CHECKING:
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what the upstream client accepts too
MAX_RECORD_BYTES = 64 * 1024
DELETE_BATCH = 1000  # S3's limit for one DeleteObjects
DEFAULT_MEDIA_TYPE = "application/octet-stream"


class S3Records:
    """Records on the S3 backend's client (started and closed with it)."""

    shared = True

    def __init__(self, blobs: S3Blobs) -> None:
        self._blobs = blobs
        self._bucket = blobs.config.bucket
        self._prefix = blobs.config.prefix
        self._removals: set[asyncio.Task[None]] = set()

    # -- keys -------------------------------------------------------------------------------

    def _manifest_key(self, digest: Digest) -> str:
        return f"{self._prefix}manifests/{digest.algorithm}/{digest.hex}"

    def _repository(self, upstream: str, repo: str) -> str:
        # Upstream names come from the config: quoted so none can climb out of its folder.
        return f"{self._prefix}repositories/{quote(upstream, safe='')}/{repo}"

    def _tag_key(self, upstream: str, repo: str, tag: str) -> str:
        return f"{self._repository(upstream, repo)}/_tags/{tag}"

    def _link_key(self, upstream: str, repo: str, digest: Digest | str) -> str:
        algorithm, _, hex_part = str(digest).partition(":")
        return f"{self._repository(upstream, repo)}/_links/{algorithm}/{hex_part}"

    # -- tags -------------------------------------------------------------------------------

    async def get_tag(self, upstream: str, repo: str, tag: str) -> TagRow | None:
        found = await self._get(self._tag_key(upstream, repo, tag), MAX_RECORD_BYTES)
        if found is None:
            return None
        try:
            record = json.loads(found[0])
            row = TagRow(
                Digest.parse(str(record["digest"])),
                str(record["media_type"]),
                float(record["resolved_at"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the bucket's record of %s:%s: %s", repo, tag, exc)
            return None
        return row if math.isfinite(row.resolved_at) else None

    async def put_tag(self, upstream: str, repo: str, tag: str, row: TagRow) -> None:
        record = {
            "digest": str(row.digest),
            "media_type": row.media_type,
            "resolved_at": row.resolved_at,
        }
        body = json.dumps(record).encode()
        await self._put(self._tag_key(upstream, repo, tag), body, "application/json")

    async def list_tags(self, upstream: str, repo: str) -> list[str]:
        folder = self._tag_key(upstream, repo, "")
        tags: list[str] = []
        try:
            paginator = self._blobs.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self._bucket, Prefix=folder):
                tags += [item["Key"].removeprefix(folder) for item in page.get("Contents", [])]
        except ERRORS as exc:
            log.warning("S3 listing of %s failed: %s", folder, exc)
            return []
        return tags

    # -- manifests --------------------------------------------------------------------------

    async def get_manifest(self, digest: Digest) -> StoredManifest | None:
        found = await self._get(self._manifest_key(digest), MAX_MANIFEST_BYTES)
        if found is None:
            return None
        body, media_type = found
        if not digest.matches(body):
            log.warning("ignoring the bucket's manifest %s: its bytes do not match", digest)
            return None
        return StoredManifest(digest, media_type, body)

    async def put_manifest(self, manifest: StoredManifest) -> None:
        await self._put(self._manifest_key(manifest.digest), manifest.body, manifest.media_type)

    async def has_manifest(self, digest: Digest) -> bool:
        return await self._exists(self._manifest_key(digest))

    # -- links ------------------------------------------------------------------------------

    async def has_link(self, upstream: str, repo: str, digest: Digest) -> bool:
        return await self._exists(self._link_key(upstream, repo, digest))

    async def _exists(self, key: str) -> bool:
        """False when absent, or when the bucket did not answer (logged)."""
        try:
            await self._blobs.client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if not missing(exc):
                log.warning("S3 HEAD of %s failed: %s", key, exc)
            return False
        except ERRORS as exc:
            log.warning("S3 HEAD of %s failed: %s", key, exc)
            return False
        return True

    async def put_links(self, upstream: str, repo: str, digests: Iterable[Digest]) -> None:
        keys = {self._link_key(upstream, repo, digest) for digest in digests}
        await asyncio.gather(*(self._put(key, b"", DEFAULT_MEDIA_TYPE) for key in keys))

    # -- removals ---------------------------------------------------------------------------

    def forget(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> None:
        keys = [self._tag_key(*key) for key in tags]
        keys += [self._link_key(*key) for key in links]
        keys += [self._manifest_key(Digest.parse(digest)) for digest in manifests]
        if keys:
            self._background(lambda: self._delete(keys))

    def forget_all(self) -> None:
        self._background(self._delete_all)

    async def close(self) -> None:
        """Wait for removals in flight (before the client closes)."""
        if self._removals:
            await asyncio.gather(*self._removals, return_exceptions=True)

    def _background(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.get_running_loop().create_task(work(), name="forget records")
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    async def _delete_all(self) -> None:
        for folder in ("manifests/", "repositories/"):
            paginator = self._blobs.client.get_paginator("list_objects_v2")
            try:
                async for page in paginator.paginate(
                    Bucket=self._bucket, Prefix=f"{self._prefix}{folder}"
                ):
                    await self._delete([item["Key"] for item in page.get("Contents", [])])
            except ERRORS as exc:
                log.warning("could not list %s%s in the bucket: %s", self._prefix, folder, exc)

    async def _delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": key} for key in keys[start : start + DELETE_BATCH]
            ]
            if not batch:
                continue
            try:
                answer = await self._blobs.client.delete_objects(
                    Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True}
                )
            except ERRORS as exc:
                log.warning("could not remove %d records from the bucket: %s", len(batch), exc)
                continue
            for error in answer.get("Errors", []):
                log.warning("could not remove %s from the bucket: %s", error.get("Key"), error)

    # -- objects ----------------------------------------------------------------------------

    async def _get(self, key: str, limit: int) -> tuple[bytes, str] | None:
        """The object's bytes and Content-Type; None when absent, larger than `limit`, or
        the bucket did not answer (logged: the caller goes on without it)."""
        try:
            answer: Any = await self._blobs.client.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if not missing(exc):
                log.warning("S3 GET of %s failed: %s", key, exc)
            return None
        except ERRORS as exc:
            log.warning("S3 GET of %s failed: %s", key, exc)
            return None
        body = answer["Body"]
        try:
            if int(answer.get("ContentLength") or 0) > limit:
                log.warning("ignoring %s in the bucket: larger than %d bytes", key, limit)
                return None
            data: bytes = await body.read()
        except (*ERRORS, asyncio.IncompleteReadError) as exc:
            log.warning("S3 GET of %s failed: %s", key, exc)
            return None
        finally:
            body.close()
        return data, str(answer.get("ContentType") or DEFAULT_MEDIA_TYPE)

    async def _put(self, key: str, body: bytes, content_type: str) -> None:
        try:
            await self._blobs.client.put_object(
                Bucket=self._bucket, Key=key, Body=body, ContentType=content_type
            )
        except ERRORS as exc:
            log.warning("S3 PUT of %s failed (other replicas will not see it): %s", key, exc)
