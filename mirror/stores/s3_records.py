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
from typing import Any
from urllib.parse import quote

from botocore.exceptions import ClientError

from mirror.errors import DigestInvalid
from mirror.reference import TAG_NAME, Digest
from mirror.stores.records import StoredManifest, TagRow
from mirror.stores.s3_blobs import S3Blobs, missing
from mirror.stores.s3_parts import ERRORS
from mirror.stores.s3_prefix import delete_keys, empty_folder
from mirror.stores.shared_records import InUse, LinkKey, RecordsAway, TagKey

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # what the upstream client accepts too
MAX_RECORD_BYTES = 64 * 1024
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
        # Upstream names come from the config: quoted so none can climb out of its folder
        # ("." and "..", which quote leaves, are path steps to S3 servers and proxies).
        name = quote(upstream, safe="")
        if name in (".", ".."):
            name = name.replace(".", "%2E")
        return f"{self._prefix}repositories/{name}/{repo}"

    def _tag_key(self, upstream: str, repo: str, tag: str) -> str:
        return f"{self._repository(upstream, repo)}/_tags/{tag}"

    def _link_key(self, upstream: str, repo: str, digest: Digest | str) -> str:
        algorithm, _, hex_part = str(digest).partition(":")
        return f"{self._repository(upstream, repo)}/_links/{algorithm}/{hex_part}"

    # -- tags -------------------------------------------------------------------------------

    async def get_tag(self, upstream: str, repo: str, tag: str) -> TagRow | None:
        found = await self._get(self._tag_key(upstream, repo, tag), MAX_RECORD_BYTES, away=True)
        if found is None:
            return None
        try:
            record = json.loads(found[0])
            row = TagRow(
                Digest.parse(str(record["digest"])),
                str(record["media_type"]),
                float(record["resolved_at"]),
            )
        # DigestInvalid: no digest (a MirrorError: uncaught, the client got a 400);
        # RecursionError: nested deeper than the parser goes; OverflowError: a time too large.
        except (
            ValueError,
            KeyError,
            TypeError,
            RecursionError,
            OverflowError,
            DigestInvalid,
        ) as exc:
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
                names = (item["Key"].removeprefix(folder) for item in page.get("Contents", []))
                tags += [name for name in names if TAG_NAME.fullmatch(name)]  # planted: no tag
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

    def _record_keys(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> list[str]:
        keys = [self._tag_key(*key) for key in tags]
        keys += [self._link_key(*key) for key in links]
        keys += [self._manifest_key(Digest.parse(digest)) for digest in manifests]
        return keys

    def forget(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> None:
        keys = self._record_keys(tags, links, manifests)

        async def delete() -> None:
            # A failure is logged only: retention's records, a cache.
            await delete_keys(self._blobs.client, self._bucket, keys)

        if keys:
            self._background(delete)

    async def remove(
        self, tags: Iterable[TagKey], links: Iterable[LinkKey], manifests: Iterable[str]
    ) -> bool:
        keys = self._record_keys(tags, links, manifests)
        return await delete_keys(self._blobs.client, self._bucket, keys)

    async def remove_all(self, in_use: InUse) -> bool:
        """Everything under the prefix that replicas share: tag records and links, then
        manifests (no record is left naming what went), then blob objects but those
        `in_use` keeps. Listed, not taken from this replica's index: other replicas stored
        objects this one never saw. (Retention's usage reports stay: each replica rewrites
        its own, and one naming what is gone only keeps nothing.)"""
        folders = (f"{self._prefix}repositories/", f"{self._prefix}manifests/")
        removed = [await empty_folder(self._blobs.client, self._bucket, f) for f in folders]
        blobs = f"{self._prefix}blobs/"

        async def spare(keys: list[str]) -> set[str]:
            named = {key: digest for key in keys if (digest := _blob_digest(blobs, key))}
            kept = await in_use(list(named.values()))
            return {key for key, digest in named.items() if digest in kept}

        removed.append(await empty_folder(self._blobs.client, self._bucket, blobs, spare))
        return all(removed)

    async def close(self) -> None:
        """Wait for removals in flight (before the client closes)."""
        if self._removals:
            await asyncio.gather(*self._removals, return_exceptions=True)

    def _background(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = asyncio.get_running_loop().create_task(work(), name="forget records")
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    # -- objects ----------------------------------------------------------------------------

    async def _get(self, key: str, limit: int, *, away: bool = False) -> tuple[bytes, str] | None:
        """The object's bytes and Content-Type; None when absent, larger than `limit`, or
        the bucket did not answer (logged: the caller goes on without it). `away`: a bucket
        that did not answer raises RecordsAway instead (absent and unknown are not the same)."""
        try:
            answer: Any = await self._blobs.client.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if missing(exc):
                return None
            log.warning("S3 GET of %s failed: %s", key, exc)
            if away:
                raise RecordsAway(key) from exc
            return None
        except ERRORS as exc:
            log.warning("S3 GET of %s failed: %s", key, exc)
            if away:
                raise RecordsAway(key) from exc
            return None
        body = answer["Body"]
        try:
            if int(answer.get("ContentLength") or 0) > limit:
                log.warning("ignoring %s in the bucket: larger than %d bytes", key, limit)
                return None
            data: bytes = await body.read()
        except (*ERRORS, asyncio.IncompleteReadError) as exc:
            log.warning("S3 GET of %s failed: %s", key, exc)
            if away:
                raise RecordsAway(key) from exc
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


def _blob_digest(folder: str, key: str) -> Digest | None:
    """The digest a blob object's key names (`<folder><alg>/<hex>`); None for any other key."""
    algorithm, _, hex_part = key.removeprefix(folder).partition("/")
    try:
        return Digest.parse(f"{algorithm}:{hex_part}")
    except DigestInvalid:
        return None
