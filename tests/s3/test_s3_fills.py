"""Fills with the S3 backend, against the fake hub (which can lie) and a real S3 server
(SeaweedFS, or Ceph RGW with `make test-ceph`): only verified bytes ever become an object,
large blobs go up as multipart uploads, and hits come back from the bucket with Range."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import MakeMirror, read_or_none
from fakes.ops import metric_value, scrape
from support.poll import eventually
from support.s3server import S3Server

from mirror.web.appkeys import MIRROR

from .conftest import KEY_PREFIX

REPO = "library/s3"
MIB = 1024 * 1024
BLOBS = (
    f"{KEY_PREFIX}blobs/"  # the keys of blobs (tag records, manifests and links are beside them)
)


def key(digest: str) -> str:
    return f"{KEY_PREFIX}blobs/sha256/{digest.split(':', 1)[1]}"


@pytest.mark.parametrize("size", [3 * MIB, 20 * MIB], ids=["one-put", "multipart"])
async def test_flipped_bytes_leave_nothing_in_the_bucket(
    size: int,
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    mirror = await make_mirror()
    digest = hub.add_blob(REPO, FakeHub.make_blob(size, seed=size))
    hub.faults.blob_wrong_bytes = True
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
        assert await read_or_none(resp) is None, "a client got a whole body of wrong bytes"
    assert seaweedfs.objects(bucket, BLOBS) == {}, "unverified bytes reached the bucket"
    # Parts of a large blob went up during the download; the abort follows the clients' cut.
    await eventually(
        lambda: asyncio.to_thread(lambda: seaweedfs.uploads(bucket) == []),
        what="no multipart upload left behind",
    )

    hub.faults.blob_wrong_bytes = False
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
        assert resp.status == 200 and len(await resp.read()) == size
    await mirror.app[MIRROR].blobs.uploads_settled()  # completed behind the client
    assert seaweedfs.objects(bucket, BLOBS) == {key(digest): size}


async def test_large_blob_round_trip_with_ranges(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    """20 MiB (three parts): fetched once upstream, then hits from the bucket, whole and in
    ranges, byte-identical; the object is complete and no upload is left open."""
    data = FakeHub.make_blob(20 * MIB, seed=7)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror()
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    async with session.get(url) as resp:
        assert (resp.headers["X-Cache"], await resp.read()) == ("miss", data)
    await mirror.app[MIRROR].blobs.uploads_settled()  # hits from the bucket from now on
    assert seaweedfs.objects(bucket, BLOBS) == {key(digest): len(data)}
    assert seaweedfs.uploads(bucket) == []
    async with session.get(url) as resp:
        assert (resp.headers["X-Cache"], await resp.read()) == ("hit", data)
    start, end = 9 * MIB - 3, 17 * MIB + 5
    async with session.get(url, headers={"Range": f"bytes={start}-{end}"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/{len(data)}"
        assert await resp.read() == data[start : end + 1]
    async with session.get(url, headers={"Range": f"bytes={len(data)}-"}) as resp:
        assert resp.status == 416
    async with session.head(url) as resp:
        assert (resp.status, resp.content_length) == (200, len(data))
    assert hub.count("cdn", "GET") == 1, "the blob's bytes were fetched upstream more than once"

    # What the bucket was asked, as /metrics tells it: three parts up, the reads down.
    metrics = await scrape(session, mirror)

    def requests(operation: str) -> float:
        labels = {"operation": operation, "status": "2xx"}
        return metric_value(metrics, "mirror_bucket_requests_total", labels) or 0.0

    assert requests("UploadPart") == 3 and requests("CompleteMultipartUpload") == 1
    assert requests("GetObject") == 2  # the whole hit and the range
    assert metric_value(metrics, "mirror_bucket_bytes_total", {"direction": "out"}) == len(data)
    sent = metric_value(metrics, "mirror_bucket_bytes_total", {"direction": "in"})
    assert sent == len(data) + (end + 1 - start)
    errors = {"operation": "UploadPart", "status": "error"}
    assert metric_value(metrics, "mirror_bucket_requests_total", errors) == 0


async def test_replica_with_an_empty_folder_needs_no_upstream(
    hub: FakeHub,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Any,
) -> None:
    """What one replica stored, another (own folder, same bucket) serves with the upstream
    down: the object is found in the bucket, not fetched."""
    data = FakeHub.make_blob(2 * MIB, seed=3)
    digest = hub.add_blob(REPO, data)
    first = await make_mirror(storage_path=tmp_path / "first")
    async with session.get(first.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
        assert await resp.read() == data
    await first.app[MIRROR].blobs.uploads_settled()  # the object is complete in the bucket
    second = await make_mirror(storage_path=tmp_path / "second")
    # Linked to the repository once (the upstream must agree the repository holds it)...
    async with session.head(second.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
        assert resp.status == 200
    hub.reset_counts()
    await hub.stop_registry()
    async with session.get(second.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
        assert (resp.status, resp.headers["X-Cache"], await resp.read()) == (200, "hit", data)
    assert hub.count() == 0


@pytest.mark.parametrize("wrong_bytes", [False, True], ids=["verified", "flipped"])
async def test_parts_go_up_during_the_download_and_appear_only_when_verified(
    wrong_bytes: bool,
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    """The upstream holds the second half of a 20 MiB blob back: by then a multipart upload
    has begun (a part went up), and no object is visible. Released, the object appears only if
    the bytes verify; flipped bytes leave neither an object nor an unfinished upload."""
    data = FakeHub.make_blob(20 * MIB, seed=11)
    digest = hub.add_blob(REPO, data)
    gate = asyncio.Event()
    hub.faults.blob_gate = gate
    hub.faults.blob_wrong_bytes = wrong_bytes
    mirror = await make_mirror()

    async def fetch() -> bytes | None:
        async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
            return await read_or_none(resp)

    client = asyncio.create_task(fetch())
    await eventually(
        lambda: asyncio.to_thread(seaweedfs.uploads, bucket),
        what="a multipart upload began while the download was held",
    )
    visible = await asyncio.to_thread(seaweedfs.objects, bucket, BLOBS)
    assert visible == {}, "visible before verified"
    gate.set()
    body = await client
    if wrong_bytes:
        assert body is None, "a client got a whole body of wrong bytes"
        await eventually(
            lambda: asyncio.to_thread(lambda: seaweedfs.uploads(bucket) == []),
            what="the upload of unverified bytes was aborted",
        )
        assert await asyncio.to_thread(seaweedfs.objects, bucket, BLOBS) == {}
    else:
        assert body == data
        await mirror.app[MIRROR].blobs.uploads_settled()  # completed behind the client
        assert await asyncio.to_thread(seaweedfs.objects, bucket, BLOBS) == {key(digest): len(data)}
        assert await asyncio.to_thread(seaweedfs.uploads, bucket) == []
