"""A purge of everything on a shared bucket: every blob object, manifest, tag record and link
under the mirror's prefix leaves the bucket at once, whichever replica stored it; other
replicas then miss and fetch again. A bucket that refuses is a 503 ("purge again"), and a
client this replica is sending a blob to gets every byte."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror
from support.poll import eventually
from support.s3server import S3Server

from mirror.web.appkeys import MIRROR

from .conftest import KEY_PREFIX
from .replicas import (
    ACCEPT,
    TOKEN,
    blob_keys,
    get,
    pull_all,
    records_of,
    refusing,
    replica,
    settled,
    stored,
)

REPO = "library/purged"
MiB = 1024 * 1024


async def purge_everything(
    session: aiohttp.ClientSession, mirror: TestServer, dry_run: bool = False
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = mirror.make_url("/admin/cache" + ("?dry_run=1" if dry_run else ""))
    async with session.delete(url, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_a_purge_of_everything_empties_the_prefix_whoever_stored_it(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Through a replica that indexed nothing: the blobs only the other replica indexed go
    too; another mirror's prefix on the same bucket is not touched."""
    image = hub.add_image(REPO, "v1", [b"layer one" * 1000, b"layer two" * 1000])
    serving = await replica(make_mirror, tmp_path, "serving")
    await pull_all(session, serving, image)
    assert blob_keys(image) <= await stored(seaweedfs, bucket)
    neighbour = f"team-b/blobs/{next(iter(blob_keys(image))).split('/blobs/', 1)[1]}"
    client = seaweedfs.client()
    await asyncio.to_thread(client.put_object, Bucket=bucket, Key=neighbour, Body=b"theirs")

    fresh = await replica(make_mirror, tmp_path, "fresh")
    before = await stored(seaweedfs, bucket)
    assert (await purge_everything(session, fresh, dry_run=True))[0] == 200
    assert await stored(seaweedfs, bucket) == before  # a dry run removes nothing
    assert (await purge_everything(session, fresh))[0] == 200
    assert await stored(seaweedfs, bucket) == set()
    assert set(await asyncio.to_thread(seaweedfs.objects, bucket, "team-b/")) == {neighbour}

    # The replica that served the image finds its objects gone: a miss, fetched again.
    hub.reset_counts()
    await pull_all(session, serving, image)
    assert hub.count(server="cdn", method="GET") == 3, hub.records()
    assert blob_keys(image) <= await stored(seaweedfs, bucket)


async def test_a_purge_of_everything_the_bucket_refused_says_purge_again(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    mirror = await replica(make_mirror, tmp_path, "only")
    await pull_all(session, mirror, image)
    client = records_of(mirror)._blobs.client
    monkeypatch.setattr(client, "delete_objects", refusing("DeleteObjects"))
    status, body = await purge_everything(session, mirror)
    assert status == 503 and "purge again" in body, (status, body)
    await settled(mirror)
    # No row here names an object that is gone (the rows went first; what is left has none).
    left = await stored(seaweedfs, bucket)
    rows = await mirror.app[MIRROR].stores.metadata.blob_rows()
    assert {f"{KEY_PREFIX}blobs/sha256/{row.digest.hex}" for row in rows} <= left

    monkeypatch.undo()
    assert (await purge_everything(session, mirror))[0] == 200
    assert await stored(seaweedfs, bucket) == set()
    hub.reset_counts()
    await pull_all(session, mirror, image)
    assert hub.count(server="cdn", method="GET") == 2, hub.records()


async def test_a_client_reading_during_a_purge_of_everything_gets_every_byte(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """The object a client of this replica is being sent stays until the client has it all
    (larger than every buffer on the way, so the reply is still being sent), then goes."""
    layer = hub.make_blob(32 * MiB, seed=90)
    image = hub.add_image(REPO, "v1", [layer])
    mirror = await replica(make_mirror, tmp_path, "only")
    await pull_all(session, mirror, image)
    key = f"{KEY_PREFIX}blobs/sha256/{image.layer_digests[0].split(':', 1)[1]}"
    url = mirror.make_url(f"/v2/{REPO}/blobs/{image.layer_digests[0]}")
    async with session.get(url, headers=ACCEPT) as resp:
        assert resp.status == 200
        first = await resp.content.readexactly(MiB)
        assert (await purge_everything(session, mirror))[0] == 200
        assert await stored(seaweedfs, bucket) == {key}, "the object being read went"
        rest = await resp.read()
    assert hashlib.sha256(first + rest).hexdigest() == image.layer_digests[0].split(":", 1)[1]
    await settled(mirror)
    assert await stored(seaweedfs, bucket) == set()


async def test_a_blob_purged_through_a_replica_that_never_indexed_it_leaves_the_bucket(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Behind a balancer `DELETE /admin/blobs/<digest>` reaches any replica: the object goes
    (a refusal is a 503), and the replica that served it fetches it again."""
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    serving = await replica(make_mirror, tmp_path, "serving")
    await pull_all(session, serving, image)
    fresh = await replica(make_mirror, tmp_path, "fresh")
    digest = image.layer_digests[0]
    url, headers = fresh.make_url(f"/admin/blobs/{digest}"), {"Authorization": f"Bearer {TOKEN}"}
    client = records_of(fresh)._blobs.client
    with monkeypatch.context() as refused:
        refused.setattr(client, "delete_object", refusing("DeleteObject"))
        async with session.delete(url, headers=headers) as resp:
            assert resp.status == 503 and "purge again" in await resp.text()
    async with session.delete(url, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    key = f"{KEY_PREFIX}blobs/sha256/{digest.split(':', 1)[1]}"
    assert key not in await stored(seaweedfs, bucket)
    hub.reset_counts()
    await pull_all(session, serving, image)
    assert hub.count(server="cdn", method="GET") == 1, hub.records()


async def test_a_manifest_purged_through_a_replica_that_never_indexed_it_leaves_the_bucket(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """The bucket's copy goes, so no replica adopts it (nor a tag record naming it) again: a
    new replica with the upstream down serves neither the tag nor the digest."""
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    serving = await replica(make_mirror, tmp_path, "serving")
    await pull_all(session, serving, image)
    fresh = await replica(make_mirror, tmp_path, "fresh")
    url = fresh.make_url(f"/admin/manifests/{image.manifest_digest}")
    async with session.delete(url, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200, await resp.text()
    key = f"{KEY_PREFIX}manifests/sha256/{image.manifest_digest.split(':', 1)[1]}"
    assert key not in await stored(seaweedfs, bucket)
    hub.faults.registry_status = 503
    new = await replica(make_mirror, tmp_path, "new")
    for reference in ("v1", image.manifest_digest):
        status, _, _ = await get(session, new, f"/v2/{REPO}/manifests/{reference}")
        assert status != 200, f"{reference} served from the bucket after its purge"


async def test_a_download_running_during_a_purge_of_everything_keeps_its_new_blob(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """As on a folder: the purge takes what is stored now; a fill halfway through its
    upload completes, and its object and row stay (the next request is a hit)."""
    data = hub.make_blob(20 * MiB, seed=91)
    digest = hub.add_blob(REPO, data)
    gate = asyncio.Event()
    hub.faults.blob_gate = gate  # the second half of the body waits
    mirror = await replica(make_mirror, tmp_path, "only")
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")

    async def fetch() -> bytes:
        async with session.get(url) as resp:
            assert resp.status == 200
            return await resp.read()

    client = asyncio.create_task(fetch())
    await eventually(
        lambda: asyncio.to_thread(seaweedfs.uploads, bucket),
        what="a multipart upload began while the download was held",
    )
    assert (await purge_everything(session, mirror))[0] == 200
    gate.set()
    assert await client == data
    await mirror.app[MIRROR].blobs.uploads_settled()  # completed behind the client
    key = f"{KEY_PREFIX}blobs/sha256/{digest.split(':', 1)[1]}"
    assert key in await stored(seaweedfs, bucket)
    hub.reset_counts()
    async with session.get(url) as resp:
        assert (resp.status, resp.headers["X-Cache"], await resp.read()) == (200, "hit", data)
    assert hub.count() == 0
