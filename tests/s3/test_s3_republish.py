"""A replica that revalidates a tag it knows puts the manifest and its links back in the bucket
when the bucket lost them, so the next replica serves the image without the upstream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.clock import FakeClock
from support.s3server import S3Server

from .conftest import KEY_PREFIX
from .replicas import get, pull_all, replica

REPO = "library/republished"


def records(seaweedfs: S3Server, bucket: str) -> set[str]:
    """The bucket's keys other than blobs."""
    keys = seaweedfs.objects(bucket, KEY_PREFIX)
    return {key for key in keys if not key.startswith(f"{KEY_PREFIX}blobs/")}


async def test_a_revalidation_puts_back_the_manifest_and_links_the_bucket_lost(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer one", b"layer two"])
    first = await replica(make_mirror, tmp_path, "first")
    await pull_all(session, first, image)
    recorded = await asyncio.to_thread(records, seaweedfs, bucket)
    lost = {key for key in recorded if "/_tags/" not in key}  # the manifest and every link
    assert len(lost) == 1 + 4, recorded
    client = seaweedfs.client()
    for key in lost:
        await asyncio.to_thread(client.delete_object, Bucket=bucket, Key=key)

    clock.advance(5 * 60 + 1)  # stale: the next pull revalidates with a HEAD
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[:2] == (
        200,
        image.manifest_bytes,
    )
    assert await asyncio.to_thread(records, seaweedfs, bucket) == recorded

    hub.faults.registry_status = 503
    hub.reset_counts()
    await pull_all(session, await replica(make_mirror, tmp_path, "second"), image)
    assert hub.count(server="registry") == 0
