"""Eviction (storage.max_size) with replicas on one bucket: the bound is on the bucket's blobs,
whichever replica stored them; one replica acts (the lowest id alive); the order is the last use
on any replica; pinned content anywhere stays; what is chosen is deleted only after the grace,
and not if a replica uses it meanwhile; fills are never held up by the bound.

Replicas are in-process mirrors on their own data folders with fixed replica ids (so which one
acts is known), one fake clock, a real S3 server's bucket; the janitor's passes are called by
the test.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub, FakeImage
from fakes.client import MakeMirror
from fakes.ops import metric_value, scrape
from support.s3server import S3Server

from .conftest import KEY_PREFIX
from .replicas import GRACE, TOKEN, blob_keys, janitor_pass, pull_all, settled, stored

REPO = "library/evict"
LAYER = 10_000
BOUND = 30_000  # three images' blobs (a layer and a small config each) are over it
PASS = 301.0  # more than the time between two eviction passes (delete_grace / 3)
# Between pulls: the test runs within a grace period, so that every report stays alive (a
# replica that has not written one for that long is taken for gone).
STEP = 60.0


@pytest.fixture
def bounded(bucket: str, mirror_config: dict[str, Any]) -> str:
    mirror_config["storage"]["max_size"] = BOUND
    return bucket


async def numbered(make_mirror: MakeMirror, tmp_path: Path, number: int) -> TestServer:
    """A replica whose id sorts by `number` (the lowest acts)."""
    folder = tmp_path / f"replica-{number}"
    folder.mkdir()
    (folder / "replica-id").write_text(f"{number:x}" * 32 + "\n")
    return await make_mirror(storage_path=folder, tag_ttl="5m", admin_token=TOKEN)


def images(hub: FakeHub, count: int = 3) -> list[FakeImage]:
    return [hub.add_image(REPO, f"v{i}", [bytes([65 + i]) * LAYER]) for i in range(count)]


def layer_key(image: FakeImage) -> str:
    """The key of an image's layer: what eviction takes first (the config is smaller than
    what must go, and of the same age)."""
    return f"{KEY_PREFIX}blobs/sha256/{image.layer_digests[0].removeprefix('sha256:')}"


async def evicted(session: aiohttp.ClientSession, *mirrors: TestServer) -> float:
    total = 0.0
    for mirror in mirrors:
        total += metric_value(await scrape(session, mirror), "mirror_evicted_blobs_total") or 0
    return total


async def passes(*mirrors: TestServer) -> None:
    for mirror in mirrors:
        await janitor_pass(mirror)
        await settled(mirror)


async def test_the_bound_is_on_the_bucket_whichever_replica_stored_what(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    first = await numbered(make_mirror, tmp_path, 1)
    second = await numbered(make_mirror, tmp_path, 2)
    old, middle, new = images(hub)
    await passes(first, second)  # each knows the other evicts
    await pull_all(session, second, old)
    clock.advance(STEP)
    await pull_all(session, first, middle)
    clock.advance(STEP)
    await pull_all(session, second, new)
    # Neither replica's index is over the bound; the bucket is.
    clock.advance(PASS)
    await passes(second, first)
    assert blob_keys(old) | blob_keys(middle) | blob_keys(new) <= await stored(seaweedfs, bounded)

    clock.advance(GRACE + PASS)
    await passes(second, first)
    left = await stored(seaweedfs, bounded)
    assert layer_key(old) not in left, "the least recently used layer stayed over the bound"
    assert blob_keys(middle) | blob_keys(new) <= left
    assert await evicted(session, first, second) == 1
    text = await scrape(session, first)
    listed = metric_value(text, "mirror_bucket_blob_bytes") or 0
    assert 0 < listed <= BOUND
    assert metric_value(text, "mirror_bucket_doomed_objects") == 0


async def test_the_order_is_the_last_use_on_any_replica(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    first = await numbered(make_mirror, tmp_path, 1)
    second = await numbered(make_mirror, tmp_path, 2)
    old, middle, new = images(hub)
    await passes(first, second)  # each knows the other evicts
    for image in (old, middle, new):  # in the acting replica's index, `old` is the oldest
        await pull_all(session, first, image)
        clock.advance(STEP)
    await pull_all(session, second, old)  # but the other replica's clients pull it today
    clock.advance(PASS)
    await passes(second, first)
    clock.advance(GRACE + PASS)
    await passes(second, first)
    left = await stored(seaweedfs, bounded)
    assert blob_keys(old) <= left, "evicted what another replica's clients pull"
    assert layer_key(middle) not in left


async def test_content_pinned_on_another_replica_is_never_evicted(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    mirror_config: dict[str, Any],
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    first = await numbered(make_mirror, tmp_path, 1)
    mirror_config["storage"]["pinned"] = [f"{REPO.removeprefix('library/')}:v0"]
    second = await numbered(make_mirror, tmp_path, 2)
    old, middle, new = images(hub)
    await passes(first, second)  # each knows the other evicts: the first acts
    await pull_all(session, second, old)  # pinned there: v0
    clock.advance(STEP)
    for image in (middle, new):
        await pull_all(session, first, image)
        clock.advance(STEP)
    clock.advance(PASS)
    await passes(second, first)
    clock.advance(GRACE + PASS)
    await passes(second, first)
    left = await stored(seaweedfs, bounded)
    assert blob_keys(old) <= left, "evicted content another replica pins"
    assert layer_key(middle) not in left


async def test_a_use_within_the_grace_keeps_what_eviction_chose(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    first = await numbered(make_mirror, tmp_path, 1)
    second = await numbered(make_mirror, tmp_path, 2)
    old, middle, new = images(hub)
    await passes(first, second)  # each knows the other evicts: the first acts
    for image in (old, middle, new):
        await pull_all(session, first, image)
        clock.advance(STEP)
    clock.advance(PASS)
    await passes(second, first)
    text = await scrape(session, first)
    assert metric_value(text, "mirror_bucket_doomed_objects") == 1  # `old`'s layer
    clock.advance(STEP)
    layer = old.layer_digests[0]
    async with session.get(second.make_url(f"/v2/{REPO}/blobs/{layer}")) as resp:
        assert (resp.status, await resp.read()) == (200, bytes([65]) * LAYER)
    clock.advance(PASS)
    await passes(second)  # its report shows the read
    clock.advance(GRACE)
    await passes(first)
    assert layer_key(old) in await stored(seaweedfs, bounded), (
        "deleted a blob another replica began serving"
    )


async def test_a_replica_that_takes_over_does_not_evict_again_what_was_doomed(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    second = await numbered(make_mirror, tmp_path, 2)
    old, middle, new = images(hub)
    for image in (old, middle, new):
        await pull_all(session, second, image)
        clock.advance(STEP)
    await passes(second)  # alone: it acts, and dooms `old`
    first = await numbered(make_mirror, tmp_path, 1)  # a lower id joins within the grace
    clock.advance(PASS)
    await passes(first)
    assert await evicted(session, first, second) == 1, "the new actor evicted a second layer"
    left = await stored(seaweedfs, bounded)
    assert blob_keys(middle) | blob_keys(new) <= left


async def test_replicas_passing_at_once_evict_once(
    hub: FakeHub,
    seaweedfs: S3Server,
    bounded: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    mirrors = [await numbered(make_mirror, tmp_path, number) for number in (1, 2, 3)]
    *under, over = images(hub)
    for image in under:
        await pull_all(session, mirrors[0], image)
        clock.advance(60)
    await passes(*mirrors)  # under the bound; each knows the others evict
    await pull_all(session, mirrors[1], over)
    clock.advance(PASS)
    await asyncio.gather(*(janitor_pass(mirror) for mirror in mirrors))
    assert await evicted(session, *mirrors) == 1


async def test_fills_are_not_held_up_or_answered_by_deletes(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """The replica's own index over the bound deletes nothing at once: the bucket's bound is
    the acting replica's, at its pass."""
    mirror = await make_mirror(storage_path=tmp_path / "one", max_size=str(LAYER + 500))
    pulled = images(hub)
    for image in pulled:
        await pull_all(session, mirror, image)
    await settled(mirror)
    text = await scrape(session, mirror)
    for operation in ("DeleteObject", "DeleteObjects"):
        assert not metric_value(text, "mirror_bucket_requests_total", {"operation": operation})
    assert set().union(*map(blob_keys, pulled)) <= await stored(seaweedfs, bucket)
