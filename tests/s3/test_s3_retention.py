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

import aiohttp
from fakes import FakeClock, FakeHub
from fakes.client import MakeMirror
from fakes.ops import metric_value, scrape
from support.s3server import S3Server

from .conftest import KEY_PREFIX
from .replicas import (
    DAY,
    GRACE,
    blob_keys,
    has_tag,
    janitor_pass,
    pull_all,
    replica,
    settled,
    stored,
)

REPO = "library/aging"


async def test_what_another_replica_pulled_stays(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    first = await replica(make_mirror, tmp_path, "first")
    second = await replica(make_mirror, tmp_path, "second")
    await pull_all(session, first, image)
    await pull_all(session, second, image)

    clock.advance(20 * DAY)
    await pull_all(session, second, image)  # only the second replica's clients pull it again
    await janitor_pass(second)  # its report: the tag and all it reaches, used today

    clock.advance(15 * DAY)  # 35 days since the first replica's last pull of it
    await janitor_pass(first)
    assert await has_tag(first, REPO, "v1"), (
        "the first replica aged out a tag the second one serves"
    )
    assert blob_keys(image) <= await stored(seaweedfs, aging)


async def test_unused_objects_leave_the_bucket_after_the_grace_period(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    mirror = await replica(make_mirror, tmp_path, "only")
    await pull_all(session, mirror, image)
    # The report of a replica gone for good, and one that does not parse.
    dead = {"replica": "dead", "written_at": clock.now - DAY, "tags": [], "digests": {}}

    def plant() -> None:
        client = seaweedfs.client()
        client.put_object(Bucket=aging, Key=f"{KEY_PREFIX}usage/dead.json", Body=json.dumps(dead))
        client.put_object(Bucket=aging, Key=f"{KEY_PREFIX}usage/garbage.json", Body=b"{")

    await asyncio.to_thread(plant)

    clock.advance(31 * DAY)
    await janitor_pass(mirror)
    await settled(mirror)
    assert not await has_tag(mirror, REPO, "v1")
    keys = await stored(seaweedfs, aging)
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
    assert not blob_keys(image) & await stored(seaweedfs, aging), "doomed objects stayed"
    assert metric_value(await scrape(session, mirror), "mirror_bucket_doomed_objects") == 0


async def test_an_object_a_replica_began_reading_within_the_grace_stays(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    first = await replica(make_mirror, tmp_path, "first")
    await pull_all(session, first, image)
    clock.advance(31 * DAY)
    await janitor_pass(first)  # unused for 31 days: its objects are doomed
    assert not await has_tag(first, REPO, "v1")

    # Within the grace period, a new replica's client pulls it: the objects are still in the
    # bucket (no upstream blob GET), and its next report says so.
    hub.reset_counts()
    second = await replica(make_mirror, tmp_path, "second")
    await pull_all(session, second, image)
    assert hub.count(server="cdn", method="GET") == 0, hub.records()
    await janitor_pass(second)

    clock.advance(GRACE + 1)
    await janitor_pass(first)
    await settled(first)
    assert blob_keys(image) <= await stored(seaweedfs, aging), "deleted under a replica's reads"
