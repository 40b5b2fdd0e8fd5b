"""Retention across replicas when things go wrong: a usage report that lies is ignored; a
bucket that cannot be read whole makes retention wait; a restart between sweep and delete
keeps objects doomed; a delete the bucket refused is tried again; a tag locked (imported) on
one replica keeps its objects in the bucket for all."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.clock import FakeClock
from support.s3server import S3Server

from mirror.web.appkeys import MIRROR

from .conftest import KEY_PREFIX
from .replicas import (
    DAY,
    DEEP,
    GRACE,
    HUGE,
    blob_keys,
    get,
    has_tag,
    janitor_pass,
    pull_all,
    records_of,
    refusing,
    replica,
    settled,
    stored,
)

REPO = "library/aging"


@pytest.mark.parametrize(
    "planted",
    [DEEP, '{"written_at": ' + HUGE + ', "tags": [], "digests": {}}'],
    ids=["deep-json", "huge-time"],
)
async def test_a_usage_report_that_does_not_parse_is_ignored(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    planted: str,
) -> None:
    """docs/scale-out.md: "a report that does not parse is ignored (logged)". One report that
    lies must not stop retention on every replica for good."""
    image = hub.add_image(REPO, "v1", [b"layer" * 100])
    mirror = await make_mirror(storage_path=tmp_path / "only")
    assert (await get(session, mirror, f"/v2/{REPO}/manifests/v1"))[1] == image.manifest_bytes
    await asyncio.to_thread(
        lambda: seaweedfs.client().put_object(
            Bucket=aging, Key=f"{KEY_PREFIX}usage/liar.json", Body=planted.encode()
        )
    )
    clock.advance(31 * DAY)
    await janitor_pass(mirror)
    assert not await has_tag(mirror, REPO, "v1"), "retention did not run past a report that lies"


async def test_a_usage_report_dated_ahead_keeps_nothing(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A replica whose clock runs a year ahead (or a planted report) would keep what it names
    for a year: a report written later than the reader's clock allows is ignored."""
    image = hub.add_image(REPO, "v1", [b"layer" * 100])
    mirror = await make_mirror(storage_path=tmp_path / "only")
    await pull_all(session, mirror, image)
    ahead = clock.now + 365 * DAY
    report = {
        "replica": "ahead",
        "written_at": ahead,
        "tags": [["docker.io", REPO, "v1", ahead]],
        "digests": {digest: ahead for digest in (image.manifest_digest, *image.layer_digests)},
    }
    await asyncio.to_thread(
        lambda: seaweedfs.client().put_object(
            Bucket=aging, Key=f"{KEY_PREFIX}usage/ahead.json", Body=json.dumps(report).encode()
        )
    )
    clock.advance(31 * DAY)
    await janitor_pass(mirror)
    assert not await has_tag(mirror, REPO, "v1"), "a report from the future kept a tag"


@pytest.mark.parametrize("failing", ["get_object", "get_paginator"])
async def test_retention_waits_when_the_reports_cannot_be_read(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer" * 100])
    first = await make_mirror(storage_path=tmp_path / "first")
    second = await make_mirror(storage_path=tmp_path / "second")
    await pull_all(session, first, image)
    await pull_all(session, second, image)
    clock.advance(20 * DAY)
    await pull_all(session, second, image)
    await janitor_pass(second)  # its report: used today
    clock.advance(15 * DAY)
    client = records_of(first)._blobs.client
    if failing == "get_paginator":

        class Refused:
            def paginate(self, **kwargs: Any) -> Any:
                return self

            def __aiter__(self) -> Any:
                return self

            async def __anext__(self) -> Any:
                await refusing("ListObjectsV2")()

        monkeypatch.setattr(client, failing, lambda name: Refused())
    else:
        monkeypatch.setattr(client, failing, refusing(failing))
    await janitor_pass(first)
    monkeypatch.undo()
    assert await has_tag(first, REPO, "v1"), "retention removed on part of the picture"
    doomed = first.app[MIRROR].stores.metadata.database
    assert await doomed.scalar("SELECT count(*) FROM doomed") == 0


async def test_a_restart_between_sweep_and_delete_keeps_objects_doomed(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer" * 100])
    mirror = await make_mirror(storage_path=tmp_path / "only")
    await pull_all(session, mirror, image)
    clock.advance(31 * DAY)
    await janitor_pass(mirror)
    assert not await has_tag(mirror, REPO, "v1")
    await mirror.close()
    restarted = await make_mirror(storage_path=tmp_path / "only")
    await janitor_pass(restarted)  # at once after the restart: still within the grace
    assert blob_keys(image) <= await stored(seaweedfs, aging)
    clock.advance(GRACE + 1)
    await janitor_pass(restarted)
    await settled(restarted)
    left = await stored(seaweedfs, aging)
    assert not blob_keys(image) & left, "doomed objects outlived a restart"


async def test_a_failed_delete_after_the_grace_is_tried_again(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A doomed object whose DELETE the bucket refused stays doomed (and is deleted at a later
    pass), rather than being forgotten in the bucket for good: no replica indexes it any more,
    so nothing else would ever delete it."""
    image = hub.add_image(REPO, "v1", [b"layer" * 100])
    mirror = await make_mirror(storage_path=tmp_path / "only")
    await pull_all(session, mirror, image)
    clock.advance(31 * DAY)
    await janitor_pass(mirror)
    clock.advance(GRACE + 1)
    client = records_of(mirror)._blobs.client
    monkeypatch.setattr(client, "delete_object", refusing("DeleteObject"))
    await janitor_pass(mirror)
    await settled(mirror)
    monkeypatch.undo()
    clock.advance(GRACE + 1)  # the bucket answers again; a later pass
    await janitor_pass(mirror)
    await settled(mirror)
    left = await stored(seaweedfs, aging)
    assert not blob_keys(image) & left, "objects whose delete failed once stay in the bucket"


async def test_a_tag_locked_on_one_replica_keeps_its_objects_in_the_bucket(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A bundle import locks its tags: "retention and eviction leave it alone". Another
    replica on the bucket that indexed the same image must not delete its objects from under
    the replica that holds it locked (an offline site has no upstream to fetch it again)."""
    image = hub.add_image(REPO, "v1", [b"layer" * 100])
    importer = await make_mirror(storage_path=tmp_path / "importer")
    other = await make_mirror(storage_path=tmp_path / "other")
    await pull_all(session, importer, image)
    # What a bundle import does with the tag (upkeep/bundle_import.py: _tag).
    index = importer.app[MIRROR].stores.index
    row = await index.metadata.get_tag("docker.io", REPO, "v1")
    assert row is not None
    await index.put_tag("docker.io", REPO, "v1", row, 300.0, locked=True, pulled_at=clock.now)
    await pull_all(session, other, image)

    clock.advance(31 * DAY)  # nobody pulls it for a month
    await janitor_pass(importer)
    assert await has_tag(importer, REPO, "v1"), "a locked tag aged out"
    await janitor_pass(other)
    clock.advance(GRACE + 1)
    await janitor_pass(importer)
    await janitor_pass(other)
    await settled(other)
    left = await stored(seaweedfs, aging)
    assert blob_keys(image) <= left, "another replica deleted the objects of a locked tag"


async def test_a_copied_data_folder_takes_a_new_id_and_reads_the_other_as_another(
    hub: FakeHub,
    seaweedfs: S3Server,
    aging: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Two processes on copies of one data folder share its replica id: each would overwrite
    the other's report and skip it as its own, so one's retention removed what only the
    other's clients pull."""
    image = hub.add_image(REPO, "v1", [b"layer" * 1000])
    copied = "c0" * 16 + "\n"
    for name in ("original", "copy"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "replica-id").write_text(copied)
    original = await replica(make_mirror, tmp_path, "original")
    copy = await replica(make_mirror, tmp_path, "copy")
    await pull_all(session, original, image)
    await pull_all(session, copy, image)
    await janitor_pass(original)
    await janitor_pass(copy)

    clock.advance(20 * DAY)
    await pull_all(session, copy, image)  # only the copy's clients pull it again
    await janitor_pass(copy)
    clock.advance(15 * DAY)
    await janitor_pass(original)
    assert await has_tag(original, REPO, "v1"), "the copy's pulls were not seen"
    assert (tmp_path / "original" / "replica-id").read_text() != copied
    reports = {key for key in await stored(seaweedfs, aging) if "/usage/" in key}
    assert len(reports) == 2, reports
