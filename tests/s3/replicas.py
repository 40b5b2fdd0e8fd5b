"""Helpers of the in-process S3 suites: replicas (mirrors on their own data folders, one
bucket, one fake clock), requests to them, the janitor's steps, and what the bucket holds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from botocore.exceptions import ClientError
from fakes import FakeImage
from fakes.client import MakeMirror
from fakes.oci import ALL_MANIFEST_TYPES
from fakes.ops import metric_value, scrape
from support.s3server import S3Server

from mirror.stores.s3_blobs import S3Blobs
from mirror.stores.s3_records import S3Records
from mirror.web.appkeys import MIRROR

from .conftest import KEY_PREFIX

TOKEN = "s3-suites-admin-token"
ACCEPT = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
DAY = 86400.0
GRACE = 900.0  # storage.s3.delete_grace's default
DEEP = "[" * 50_000  # JSON under the size limits, nested deeper than json's recursion goes
HUGE = "1" + "0" * 400  # an integer JSON parses, too large for a float


async def replica(make_mirror: MakeMirror, tmp_path: Path, name: str) -> TestServer:
    """A mirror on its own empty data folder, on the test's bucket."""
    return await make_mirror(storage_path=tmp_path / name, tag_ttl="5m", admin_token=TOKEN)


async def get(
    session: aiohttp.ClientSession, mirror: TestServer, path: str
) -> tuple[int, bytes, str]:
    async with session.get(mirror.make_url(path), headers=ACCEPT) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


async def pull_all(session: aiohttp.ClientSession, mirror: TestServer, image: FakeImage) -> None:
    """A client pull: the tag, then every blob, each answered whole; then the uploads that
    complete behind the clients (services/pending_uploads.py), so the bucket holds the blobs."""
    status, body, _ = await get(session, mirror, f"/v2/{image.repo}/manifests/{image.tag}")
    assert (status, body) == (200, image.manifest_bytes)
    for digest in (image.config_digest, *image.layer_digests):
        assert (await get(session, mirror, f"/v2/{image.repo}/blobs/{digest}"))[0] == 200, digest
    await mirror.app[MIRROR].blobs.uploads_settled()


async def janitor_pass(mirror: TestServer) -> None:
    """What the janitor does at a pass: flush pull and read times, retention, eviction."""
    janitor = mirror.app[MIRROR].upkeep.janitor
    await janitor.flush()
    await janitor.retain()
    await janitor.evict()


async def has_tag(mirror: TestServer, repo: str, tag: str) -> bool:
    return await mirror.app[MIRROR].stores.metadata.get_tag("docker.io", repo, tag) is not None


async def settled(mirror: TestServer) -> None:
    """The replica's deletes in flight are done (they run in the background)."""
    backend = mirror.app[MIRROR].stores.backend
    assert isinstance(backend, S3Blobs)
    await backend.settled()


def blob_keys(image: FakeImage) -> set[str]:
    digests = (image.config_digest, *image.layer_digests)
    return {f"{KEY_PREFIX}blobs/sha256/{digest.split(':', 1)[1]}" for digest in digests}


async def stored(server: S3Server, bucket: str) -> set[str]:
    return set(await asyncio.to_thread(server.objects, bucket, KEY_PREFIX))


def records_of(mirror: TestServer) -> S3Records:
    records = mirror.app[MIRROR].stores.index.records
    assert isinstance(records, S3Records)
    return records


def refusing(operation: str) -> Any:
    """A client method that answers as a bucket with the wrong key does (403)."""

    async def refuse(**kwargs: Any) -> Any:
        answer: Any = {
            "Error": {"Code": "AccessDenied", "Message": "wrong key"},
            "ResponseMetadata": {"HTTPStatusCode": 403},
        }
        raise ClientError(answer, operation)

    return refuse


async def bucket_ops(session: aiohttp.ClientSession, mirror: TestServer) -> dict[str, float]:
    """The replica's bucket GETs and HEADs so far (its metrics)."""
    text = await scrape(session, mirror)
    return {
        op: metric_value(text, "mirror_bucket_requests_total", {"operation": op}) or 0.0
        for op in ("GetObject", "HeadObject")
    }


async def plant(server: S3Server, bucket: str, name: str, document: dict[str, Any]) -> None:
    """An object under usage/ that no replica wrote."""
    body = json.dumps(document).encode()
    await asyncio.to_thread(
        lambda: server.client().put_object(
            Bucket=bucket, Key=f"{KEY_PREFIX}usage/{name}", Body=body
        )
    )


class Refused:
    """A listing the bucket refuses at its first page."""

    def __aiter__(self) -> Refused:
        return self

    async def __anext__(self) -> Any:
        await refusing("ListObjectsV2")()


class BlobsUnlisted:
    """A paginator that lists everything but the blobs (a key whose policy allows listing
    the usage reports only, or a listing of the blobs that times out every time)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def paginate(self, **kwargs: Any) -> Any:
        if str(kwargs["Prefix"]).endswith("blobs/"):
            return Refused()
        return self._inner.paginate(**kwargs)
