"""Eviction across replicas when things go wrong: a planted report, an acting replica gone,
failing or unable to list, a use reported after the doom, a tag locked after it, a report
whose answer was lost, and the metrics afterwards.

Replicas as in test_s3_eviction.py: fixed ids (the lowest acts), one fake clock, a real S3
server's bucket, the janitor's passes called by the test.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ReadTimeoutError
from fakes import FakeClock, FakeHub
from fakes.client import MakeMirror
from fakes.ops import metric_value, scrape
from support.s3server import S3Server

from mirror.web.appkeys import MIRROR

from .replicas import (
    GRACE,
    BlobsUnlisted,
    blob_keys,
    janitor_pass,
    plant,
    pull_all,
    records_of,
    stored,
)
from .test_s3_eviction import (
    BOUND,
    PASS,
    REPO,
    STEP,
    evicted,
    images,
    layer_key,
    numbered,
    passes,
)


@pytest.fixture
def bounded(bucket: str, mirror_config: dict[str, Any]) -> str:
    mirror_config["storage"]["max_size"] = BOUND
    return bucket


@pytest.mark.parametrize(
    ("name", "replica"),
    [("0000.json", "0000"), ("0", "0"), ("0" * 32 + ".json", "someone-else")],
    ids=["short-id", "no-suffix", "not-its-own-name"],
)
async def test_a_planted_report_below_every_replica_does_not_stop_eviction(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    name: str,
    replica: str,
) -> None:
    """Only a report a replica wrote (`usage/<its id>.json`, naming that id) can make the
    others wait for it: an object under usage/ whose name no replica has sorts below every
    real id, and stopped every replica from evicting while it was fresh."""
    first = await numbered(make_mirror, tmp_path, 1)
    for image in images(hub):
        await pull_all(session, first, image)
        clock.advance(STEP)
    planted = {"replica": replica, "written_at": clock.now, "evicts": True}
    await plant(seaweedfs, bounded, name, {**planted, "tags": [], "digests": {}})
    clock.advance(PASS)
    await passes(first)
    assert await evicted(session, first) == 1, "a planted report kept every replica waiting"


async def test_what_a_gone_replica_doomed_counts_against_the_bound_again(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """docs/scale-out.md: what a gone actor "doomed and did not delete stays in the bucket
    until chosen again". Its report still lists it as doomed until the report is stale (the
    whole window, 7 days): the next actor must not take that for a delete to come."""
    second = await numbered(make_mirror, tmp_path, 2)
    old, middle, new = images(hub)
    for image in (old, middle, new):
        await pull_all(session, second, image)
        clock.advance(STEP)
    await passes(second)  # alone: it acts, dooms `old`'s layer, and is gone before the grace ends
    first = await numbered(make_mirror, tmp_path, 1)
    clock.advance(2 * GRACE + PASS)  # the second's report names a replica gone
    await passes(first)
    clock.advance(GRACE + PASS)
    await passes(first)
    left = await stored(seaweedfs, bounded)
    assert layer_key(old) not in left, "the bucket stayed over the bound for the window"
    assert blob_keys(middle) | blob_keys(new) <= left


async def test_a_blob_served_elsewhere_before_the_doom_is_kept(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    mirror_config: dict[str, Any],
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A blob no report names is ordered by its creation, on the bucket's clock brought to the
    acting replica's; the replica that filled and served it reports that on its own clock,
    after the doom. Its use must keep the blob, whichever clock reads later (here the fake
    clock runs behind the bucket's: creation maps to the acting replica's pass)."""
    mirror_config["storage"]["low_water"] = 0.1  # everything unpinned goes
    first = await numbered(make_mirror, tmp_path, 1)
    second = await numbered(make_mirror, tmp_path, 2)
    pulled = images(hub)
    await passes(first, second)  # each knows the other evicts: the first acts
    clock.advance(PASS)
    for image in pulled:  # served by the second, not reported yet
        await pull_all(session, second, image)
    clock.advance(STEP)
    await passes(first)
    assert await evicted(session, first) > 0
    clock.advance(STEP)
    await passes(second)  # its report shows the reads, made before the doom
    clock.advance(GRACE)
    await passes(first)
    left = await stored(seaweedfs, bounded)
    assert set().union(*map(blob_keys, pulled)) <= left, "deleted what a replica was serving"


async def test_a_replica_that_no_longer_acts_shows_no_bucket_total(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """mirror_bucket_blob_bytes: "only the replica that evicts lists, the others show 0". The
    dashboard takes the max over replicas: one that acted before keeps a stale total."""
    second = await numbered(make_mirror, tmp_path, 2)
    for image in images(hub, 2):
        await pull_all(session, second, image)
        clock.advance(STEP)
    await passes(second)  # alone: it acts (under the bound)
    assert metric_value(await scrape(session, second), "mirror_bucket_blob_bytes")
    first = await numbered(make_mirror, tmp_path, 1)
    await passes(first)  # the first acts from now on
    clock.advance(PASS)
    await janitor_pass(second)
    assert metric_value(await scrape(session, second), "mirror_bucket_blob_bytes") == 0


async def test_a_replica_that_cannot_list_the_blobs_lets_the_next_one_act(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lowest id alive acts; one that is alive but cannot look at the blobs evicted
    nothing, and kept every other replica waiting for it for as long as it ran."""
    first = await numbered(make_mirror, tmp_path, 1)
    second = await numbered(make_mirror, tmp_path, 2)
    await passes(first, second)  # each knows the other evicts: the first acts
    for image in images(hub):
        await pull_all(session, second, image)
        clock.advance(STEP)
    client = records_of(first)._blobs.client
    listing = client.get_paginator
    monkeypatch.setattr(client, "get_paginator", lambda name: BlobsUnlisted(listing(name)))
    for _ in range(3):
        clock.advance(PASS)
        await passes(first, second)
    assert await evicted(session, first, second) == 1, "nobody evicted"


async def test_content_locked_after_the_doom_is_not_deleted(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A bundle import stores its blobs first and locks its tags last: an eviction pass in
    between may doom a blob of it (unlocked, not yet pulled by anyone). Once locked, the
    import's content must stay (an offline site cannot fetch it again), though nobody reads
    it within the grace."""
    first = await numbered(make_mirror, tmp_path, 1)
    old, middle, new = images(hub)
    for image in (old, middle, new):
        await pull_all(session, first, image)
        clock.advance(STEP)
    await passes(first)  # alone: it acts, and dooms `old`'s layer
    assert await evicted(session, first) == 1
    # What the import does last (upkeep/bundle_import.py: _tag).
    index = first.app[MIRROR].stores.index
    row = await index.metadata.get_tag("docker.io", REPO, old.tag)
    assert row is not None
    await index.put_tag("docker.io", REPO, old.tag, row, 300.0, locked=True, pulled_at=clock.now)
    clock.advance(GRACE + PASS)
    await passes(first)
    assert layer_key(old) in await stored(seaweedfs, bounded), "deleted a locked tag's layer"


async def test_a_replica_whose_eviction_fails_lets_the_next_one_act(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The acting replica's pass fails after listing (its index cannot be written: a full
    disk); the janitor logs it and tries again at the next pass, and the others must not
    wait for it meanwhile."""
    first = await numbered(make_mirror, tmp_path, 1)
    second = await numbered(make_mirror, tmp_path, 2)
    await passes(first, second)  # each knows the other evicts: the first acts
    for image in images(hub):
        await pull_all(session, second, image)
        clock.advance(STEP)

    async def full(*args: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")

    eviction = first.app[MIRROR].upkeep.janitor._bucket_eviction
    assert eviction is not None
    monkeypatch.setattr(eviction._doomed, "evict", full)
    failed = 0
    for _ in range(3):
        clock.advance(PASS)
        try:
            await janitor_pass(first)
        except sqlite3.OperationalError:
            failed += 1
        await passes(second)
    assert failed
    assert await evicted(session, second) == 1, "nobody evicted"


async def test_a_report_whose_answer_was_lost_keeps_the_replica_id(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bucket stored the report but its answer was lost (a read timeout): at the next pass
    the report's ETag is not one this process saw. Taken for a copied data folder's, the acting
    replica took a new id, logged an error, and left its old id (the lowest, evicting) alive
    for a grace: every replica waited for it."""
    first = await numbered(make_mirror, tmp_path, 1)
    second = await numbered(make_mirror, tmp_path, 2)
    await passes(first, second)  # each knows the other evicts: the first acts
    for image in images(hub):
        await pull_all(session, second, image)
        clock.advance(STEP)
    client = records_of(first)._blobs.client
    put = client.put_object

    async def lost(**kwargs: Any) -> Any:
        await put(**kwargs)
        raise ReadTimeoutError(endpoint_url=seaweedfs.endpoint)

    monkeypatch.setattr(client, "put_object", lost)
    clock.advance(PASS)
    await passes(first)  # its report lands; this process never learns its ETag
    monkeypatch.undo()
    clock.advance(PASS)
    await passes(first, second)
    assert (tmp_path / "replica-1" / "replica-id").read_text().strip() == "1" * 32
    # The first replica still acts, alone. (How many blobs it takes depends on the order of
    # objects created in the same second: the config, or the layer with it.)
    assert await evicted(session, second) == 0
    assert await evicted(session, first) >= 1
