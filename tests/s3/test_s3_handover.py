"""A cold fill's last byte goes out once the blob is verified and on this replica's disk, while
its upload completes behind the clients (services/pending_uploads.py), against a real bucket.

The bucket's completing call (CompleteMultipartUpload, or the single PUT of a small blob) is
held or refused here, on the replica's own client: while it is held, clients get the whole
blob, hits and ranges come from the verified local file, and no object is visible; refused,
the row goes and nothing remains in the bucket; a purge meanwhile leaves no object; a stop
waits for the upload, or aborts it, and leaves no half object either way."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from botocore.exceptions import ClientError
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.ops import metric_value, scrape
from support.poll import eventually
from support.s3server import S3Server

from mirror.reference import Digest
from mirror.services import pending_uploads
from mirror.stores.s3_blobs import S3Blobs
from mirror.web.appkeys import MIRROR

from .conftest import KEY_PREFIX

REPO = "library/handover"
MIB = 1024 * 1024
BLOBS = f"{KEY_PREFIX}blobs/"
TOKEN = "handover-admin-token"
# A blob under one part is a single PUT; above, parts and a CompleteMultipartUpload.
SIZES = pytest.mark.parametrize("size", [3 * MIB, 20 * MIB], ids=["one-put", "multipart"])


def completing(size: int) -> str:
    return "put_object" if size <= 8 * MIB else "complete_multipart_upload"


def key(digest: str) -> str:
    return f"{KEY_PREFIX}blobs/sha256/{digest.split(':', 1)[1]}"


class Hold:
    """The replica's completing call waits for `release`; `reached` once it was called."""

    def __init__(self, mirror: TestServer, operation: str) -> None:
        backend = mirror.app[MIRROR].stores.backend
        assert isinstance(backend, S3Blobs)
        self.release = asyncio.Event()
        self.reached = asyncio.Event()
        original: Callable[..., Awaitable[Any]] = getattr(backend.client, operation)

        async def held(**kwargs: Any) -> Any:
            self.reached.set()
            await self.release.wait()
            return await original(**kwargs)

        setattr(backend.client, operation, held)


def refuse(mirror: TestServer, operation: str) -> None:
    """The completing call answers as a failing bucket does (500)."""
    backend = mirror.app[MIRROR].stores.backend
    assert isinstance(backend, S3Blobs)

    async def refused(**kwargs: Any) -> Any:
        answer: Any = {
            "Error": {"Code": "InternalError", "Message": "no"},
            "ResponseMetadata": {"HTTPStatusCode": 500},
        }
        raise ClientError(answer, operation)

    setattr(backend.client, operation, refused)


async def fetch(
    session: aiohttp.ClientSession, url: Any, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    async with session.get(url, headers=headers or {}) as resp:
        return resp.status, resp.headers.get("X-Cache", ""), await resp.read()


async def bucket_gets(session: aiohttp.ClientSession, mirror: TestServer) -> float:
    text = await scrape(session, mirror)
    labels = {"operation": "GetObject", "status": "2xx"}
    return metric_value(text, "mirror_bucket_requests_total", labels) or 0.0


def temp_files(mirror: TestServer) -> list[Path]:
    return list(mirror.app[MIRROR].stores.files.tmp_dir.iterdir())


async def objects(seaweedfs: S3Server, bucket: str) -> dict[str, int]:
    return await asyncio.to_thread(seaweedfs.objects, bucket, BLOBS)


@SIZES
async def test_clients_and_hits_are_served_before_the_object_is_complete(
    size: int,
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    data = FakeHub.make_blob(size, seed=size + 1)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror()
    hold = Hold(mirror, completing(size))
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")

    client = asyncio.create_task(fetch(session, url))
    await hold.reached.wait()
    # The upload is held at its completing call: the client still gets its last byte.
    await eventually(client.done, what="the client got the whole blob while the upload waits")
    assert client.result() == (200, "miss", data)
    assert await objects(seaweedfs, bucket) == {}, "an object before its upload completed"

    # Hits meanwhile: the verified local file, whole and in ranges; the bucket is not read.
    assert await fetch(session, url) == (200, "hit", data)
    start, end = size // 3, size // 2
    status, _, part = await fetch(session, url, {"Range": f"bytes={start}-{end}"})
    assert (status, part) == (206, data[start : end + 1])
    async with session.head(url) as resp:
        assert (resp.status, resp.content_length) == (200, size)
    assert await bucket_gets(session, mirror) == 0

    hold.release.set()
    await mirror.app[MIRROR].blobs.uploads_settled()
    assert await objects(seaweedfs, bucket) == {key(digest): size}
    assert await asyncio.to_thread(seaweedfs.uploads, bucket) == []
    assert temp_files(mirror) == [], "the local copy outlived the upload"
    # From now on hits come from the bucket.
    assert await fetch(session, url) == (200, "hit", data)
    assert await bucket_gets(session, mirror) == 1
    assert hub.count("cdn", "GET") == 1


@SIZES
async def test_a_failed_complete_leaves_no_row_and_no_object(
    size: int,
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    data = FakeHub.make_blob(size, seed=size + 2)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror()
    refuse(mirror, completing(size))
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    # The bytes were verified: the client has the right blob whatever the bucket does next.
    assert await fetch(session, url) == (200, "miss", data)
    await mirror.app[MIRROR].blobs.uploads_settled()

    metadata = mirror.app[MIRROR].stores.metadata
    assert await metadata.blob_row(Digest.parse(digest)) is None, "a row for a missing object"
    assert await objects(seaweedfs, bucket) == {}
    assert await asyncio.to_thread(seaweedfs.uploads, bucket) == [], "an upload left open"
    assert temp_files(mirror) == []
    # The next request is a miss, fetched again.
    assert await fetch(session, url) == (200, "miss", data)
    assert hub.count("cdn", "GET") == 2


async def test_a_purge_during_the_upload_leaves_no_object(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    size = 20 * MIB
    data = FakeHub.make_blob(size, seed=31)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror(admin_token=TOKEN)
    hold = Hold(mirror, completing(size))
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    assert await fetch(session, url) == (200, "miss", data)
    await hold.reached.wait()
    purge = mirror.make_url(f"/admin/blobs/{digest}")
    async with session.delete(purge, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200, await resp.text()
    hold.release.set()
    await mirror.app[MIRROR].blobs.uploads_settled()
    backend = mirror.app[MIRROR].stores.backend
    assert isinstance(backend, S3Blobs)
    await backend.settled()
    # The upload completed after the purge's delete: the object must not outlive the purge.
    assert await objects(seaweedfs, bucket) == {}
    assert temp_files(mirror) == []


@pytest.mark.parametrize("drain", ["waits", "aborts"])
async def test_a_stop_during_the_upload_leaves_no_half_object(
    drain: str,
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stop waits for the uploads in flight (up to DRAIN), then aborts the rest: the object
    is then whole or absent, and no unfinished upload remains."""
    if drain == "aborts":
        monkeypatch.setattr(pending_uploads, "DRAIN", 0.0)
    size = 20 * MIB
    data = FakeHub.make_blob(size, seed=41)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror()
    hold = Hold(mirror, completing(size))
    assert await fetch(session, mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) == (
        200,
        "miss",
        data,
    )
    await hold.reached.wait()
    stop = asyncio.create_task(mirror.close())
    if drain == "waits":
        await eventually(
            lambda: not stop.done() and mirror.app[MIRROR].blobs.stopping,
            what="the stop reached the uploads in flight",
        )
        hold.release.set()
    await stop
    uploads = await asyncio.to_thread(seaweedfs.uploads, bucket)
    assert uploads == [], "an unfinished upload after a stop"
    expected = {key(digest): size} if drain == "waits" else {}
    assert await objects(seaweedfs, bucket) == expected


async def test_a_client_reading_the_local_copy_keeps_it_through_completion_and_a_purge(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    """A hit sent from the local file while the upload runs: the upload completing and a purge
    meanwhile do not take the file from under it (it goes with its last reader)."""
    # More than the sockets' buffers hold, so the hit is still being sent while the client
    # waits: loopback's autotuned receive buffer grows to 32 MiB here (tcp_rmem), the send
    # buffer to 4 MiB; with 20 MiB the whole body could sit in the kernel, the file let go.
    size = 64 * MIB
    data = FakeHub.make_blob(size, seed=51)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror(admin_token=TOKEN)
    hold = Hold(mirror, completing(size))
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    assert await fetch(session, url) == (200, "miss", data)
    await hold.reached.wait()
    async with session.get(url) as resp:
        assert resp.headers["X-Cache"] == "hit"
        first = await resp.content.readexactly(MIB)  # then it stops reading for a while
        hold.release.set()
        await mirror.app[MIRROR].blobs.uploads_settled()
        purge = mirror.make_url(f"/admin/blobs/{digest}")
        async with session.delete(purge, headers={"Authorization": f"Bearer {TOKEN}"}) as done:
            assert done.status == 200, await done.text()
        assert temp_files(mirror), "the local copy went while a client was sent it"
        assert first + await resp.read() == data
    await eventually(lambda: temp_files(mirror) == [], what="the local copy gone after its reader")
    backend = mirror.app[MIRROR].stores.backend
    assert isinstance(backend, S3Blobs)
    await backend.settled()
    assert await objects(seaweedfs, bucket) == {}, "the purged object"
