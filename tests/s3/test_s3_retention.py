"""Retention (storage.max_unused_age) with replicas on one bucket: what another replica's
clients pulled stays; what nobody pulled leaves the index and the bucket's records at once and
its objects only after `delete_grace`; an object a replica began reading within the grace stays.

Replicas here are in-process mirrors on their own data folders, one fake clock, a real
S3 server's bucket; the janitor's steps (flush, then retention) are called by the test, so each
replica's report is written exactly when the test says.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub, FakeImage
from fakes.client import MakeMirror
from fakes.oci import ALL_MANIFEST_TYPES
from fakes.ops import metric_value, scrape
from support.s3server import S3Server

from mirror.stores.s3_blobs import S3Blobs
from mirror.web.appkeys import MIRROR

from .conftest import KEY_PREFIX

REPO = "library/aging"
DAY = 86400.0
GRACE = 900.0  # storage.s3.delete_grace's default


@pytest.fixture
def bucket(bucket: str, mirror_config: dict[str, Any]) -> str:
    """The suite's bucket, with 30 days of retention for the mirrors on it."""
    mirror_config["storage"]["max_unused_age"] = "30d"
    return bucket


async def replica(make_mirror: MakeMirror, tmp_path: Path, name: str) -> TestServer:
    return await make_mirror(storage_path=tmp_path / name)


async def pull(session: aiohttp.ClientSession, mirror: TestServer, image: FakeImage) -> None:
    """A client pull: the tag, then every blob."""
    url = mirror.make_url(f"/v2/{REPO}/manifests/{image.tag}")
    async with session.get(url, headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}) as resp:
        assert (resp.status, await resp.read()) == (200, image.manifest_bytes)
    for digest in (image.config_digest, *image.layer_digests):
        async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
            assert resp.status == 200, digest
            await resp.read()


async def janitor_pass(mirror: TestServer) -> None:
    """What the janitor does at a pass: flush pull and read times, then retention."""
    janitor = mirror.app[MIRROR].upkeep.janitor
    await janitor.flush()
    await janitor.retain()


async def has_tag(mirror: TestServer, tag: str) -> bool:
    metadata = mirror.app[MIRROR].stores.metadata
    return await metadata.get_tag("docker.io", REPO, tag) is not None


def blob_keys(image: FakeImage) -> set[str]:
    digests = (image.config_digest, *image.layer_digests)
    return {f"{KEY_PREFIX}blobs/sha256/{digest.split(':', 1)[1]}" for digest in digests}


async def settled(mirror: TestServer) -> None:
    """The replica's deletes in flight are done (they run in the background)."""
    backend = mirror.app[MIRROR].stores.backend
    assert isinstance(backend, S3Blobs)
    await backend.settled()


async def stored(seaweedfs: S3Server, bucket: str) -> set[str]:
    return set(await asyncio.to_thread(seaweedfs.objects, bucket, KEY_PREFIX))


async def test_what_another_replica_pulled_stays(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    first = await replica(make_mirror, tmp_path, "first")
    second = await replica(make_mirror, tmp_path, "second")
    await pull(session, first, image)
    await pull(session, second, image)

    clock.advance(20 * DAY)
    await pull(session, second, image)  # only the second replica's clients pull it again
    await janitor_pass(second)  # its report: the tag and all it reaches, used today

    clock.advance(15 * DAY)  # 35 days since the first replica's last pull of it
    await janitor_pass(first)
    assert await has_tag(first, "v1"), "the first replica aged out a tag the second one serves"
    assert blob_keys(image) <= await stored(seaweedfs, bucket)


async def test_unused_objects_leave_the_bucket_after_the_grace_period(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    mirror = await replica(make_mirror, tmp_path, "only")
    await pull(session, mirror, image)
    # The report of a replica gone for good, and one that does not parse.
    dead = {"replica": "dead", "written_at": clock.now - DAY, "tags": [], "digests": {}}

    def plant() -> None:
        client = seaweedfs.client()
        client.put_object(Bucket=bucket, Key=f"{KEY_PREFIX}usage/dead.json", Body=json.dumps(dead))
        client.put_object(Bucket=bucket, Key=f"{KEY_PREFIX}usage/garbage.json", Body=b"{")

    await asyncio.to_thread(plant)

    clock.advance(31 * DAY)
    await janitor_pass(mirror)
    await settled(mirror)
    assert not await has_tag(mirror, "v1")
    keys = await stored(seaweedfs, bucket)
    # The records went at once; the objects wait for the grace period.
    records = (f"{KEY_PREFIX}repositories/", f"{KEY_PREFIX}manifests/")
    assert not {key for key in keys if key.startswith(records)}, keys
    assert blob_keys(image) <= keys, "objects were deleted before the grace period"
    assert f"{KEY_PREFIX}usage/dead.json" not in keys, "a stale report was kept"
    waiting = len(blob_keys(image))
    assert metric_value(await scrape(session, mirror), "mirror_bucket_doomed_objects") == waiting

    clock.advance(GRACE + 1)
    await janitor_pass(mirror)
    await settled(mirror)
    assert not blob_keys(image) & await stored(seaweedfs, bucket), "doomed objects stayed"
    assert metric_value(await scrape(session, mirror), "mirror_bucket_doomed_objects") == 0


async def test_an_object_a_replica_began_reading_within_the_grace_stays(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    first = await replica(make_mirror, tmp_path, "first")
    await pull(session, first, image)
    clock.advance(31 * DAY)
    await janitor_pass(first)  # unused for 31 days: its objects are doomed
    assert not await has_tag(first, "v1")

    # Within the grace period, a new replica's client pulls it: the objects are still in the
    # bucket (no upstream blob GET), and its next report says so.
    hub.reset_counts()
    second = await replica(make_mirror, tmp_path, "second")
    await pull(session, second, image)
    assert hub.count(server="cdn", method="GET") == 0, hub.records()
    await janitor_pass(second)

    clock.advance(GRACE + 1)
    await janitor_pass(first)
    await settled(first)
    assert blob_keys(image) <= await stored(seaweedfs, bucket), "deleted under a replica's reads"
