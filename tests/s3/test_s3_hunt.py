"""HUNT: fault-hunting tests against the shared index and retention across replicas.

Each test here was written to break a promise of docs/scale-out.md; those marked
`# HUNT FAULT` failed against the code they were written for (see the commit message)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from botocore.exceptions import ClientError
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.clock import FakeClock
from fakes.oci import ALL_MANIFEST_TYPES
from fakes.ops import metric_value, scrape
from support.s3server import S3Server

from mirror.reference import Digest
from mirror.stores.records import TagRow
from mirror.stores.s3_records import S3Records
from mirror.web.appkeys import MIRROR

from .conftest import KEY_PREFIX

REPO = "library/hunted"
TOKEN = "hunt-admin-token"
ACCEPT = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}


async def replica(make_mirror: MakeMirror, tmp_path: Path, name: str) -> TestServer:
    return await make_mirror(storage_path=tmp_path / name, tag_ttl="5m", admin_token=TOKEN)


async def get(
    session: aiohttp.ClientSession, mirror: TestServer, path: str
) -> tuple[int, bytes, str]:
    async with session.get(mirror.make_url(path), headers=ACCEPT) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


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
    text = await scrape(session, mirror)
    return {
        op: metric_value(text, "mirror_bucket_requests_total", {"operation": op}) or 0.0
        for op in ("GetObject", "HeadObject")
    }


# HUNT FAULT 1 -------------------------------------------------------------------------------


async def test_hunt_bucket_refusing_a_record_read_does_not_unserve_a_stale_tag(
    hub: FakeHub,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/scale-out.md, Failure modes: "bucket unreachable while a record is read or
    written: the replica goes on with its own index and the upstream". A tag this replica
    knows, stale, upstream down, bucket refusing: its own index has the manifest, so it is
    served stale, as with one replica (a bucket that does not answer is not a purge)."""
    image = hub.add_image(REPO, "v1", [b"layer"])
    mirror = await replica(make_mirror, tmp_path, "only")
    assert (await get(session, mirror, f"/v2/{REPO}/manifests/v1"))[:2] == (
        200,
        image.manifest_bytes,
    )
    hub.faults.registry_status = 503
    clock.advance(5 * 60 + 1)
    client = records_of(mirror)._blobs.client
    monkeypatch.setattr(client, "get_object", refusing("GetObject"))
    status, body, _ = await get(session, mirror, f"/v2/{REPO}/manifests/v1")
    assert (status, body) == (200, image.manifest_bytes), (
        "a bucket that did not answer was taken for a purge: the stale tag was not served"
    )


# HUNT FAULT 2 -------------------------------------------------------------------------------


async def test_hunt_a_record_from_the_future_is_not_fresh_forever(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A tag record whose resolved_at lies in the future (a replica whose clock runs ahead, or
    a planted record) must not make every replica serve the tag without revalidating for as
    long as it likes: once tag_ttl has passed here, the tag is asked upstream again."""
    old = hub.add_image(REPO, "v1", [b"old layer"])
    first = await replica(make_mirror, tmp_path, "first")
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[1] == old.manifest_bytes
    key = f"{KEY_PREFIX}repositories/docker.io/{REPO}/_tags/v1"
    record = {
        "digest": old.manifest_digest,
        "media_type": old.media_type,
        "resolved_at": clock.now + 10 * 365 * 86400.0,  # ten years ahead
    }
    await asyncio.to_thread(
        lambda: seaweedfs.client().put_object(
            Bucket=bucket, Key=key, Body=json.dumps(record).encode()
        )
    )
    second = await replica(make_mirror, tmp_path, "second")
    assert (await get(session, second, f"/v2/{REPO}/manifests/v1"))[1] == old.manifest_bytes

    new = hub.add_image(REPO, "v1", [b"new layer"])  # the tag moves upstream
    clock.advance(3600)  # an hour: well past tag_ttl (5m)
    status, body, _ = await get(session, second, f"/v2/{REPO}/manifests/v1")
    assert (status, body) == (200, new.manifest_bytes), (
        "a record dated ten years ahead kept the tag fresh past tag_ttl"
    )


# HUNT FAULT 3 -------------------------------------------------------------------------------


async def test_hunt_a_storm_on_a_blob_at_a_new_replica_looks_it_up_once(
    hub: FakeHub,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Many clients on a new replica for a blob another replica stored: one HEAD of its link
    and one HEAD of the object (SingleFlight), however many clients; each client's bytes are
    then one GET each."""
    image = hub.add_image(REPO, "v1", [b"layer" * 4000])
    first = await replica(make_mirror, tmp_path, "first")
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[0] == 200
    digest = image.layer_digests[0]
    assert (await get(session, first, f"/v2/{REPO}/blobs/{digest}"))[0] == 200
    second = await replica(make_mirror, tmp_path, "second")
    before = await bucket_ops(session, second)
    clients = 40
    answers = await asyncio.gather(
        *(get(session, second, f"/v2/{REPO}/blobs/{digest}") for _ in range(clients))
    )
    assert {answer[:2] for answer in answers} == {(200, image.layers[0])}
    after = await bucket_ops(session, second)
    heads = after["HeadObject"] - before["HeadObject"]
    assert heads == 2, f"{heads} HEADs of the bucket for one blob and {clients} clients"


# HUNT FAULT 4 -------------------------------------------------------------------------------

DEEP = "[" * 50_000  # under MAX_RECORD_BYTES; deeper than json's recursion goes
HUGE = "1" + "0" * 400  # an int JSON parses, too large for a float


@pytest.mark.parametrize(
    "planted",
    [
        '{"digest": "not-a-digest", "media_type": "x", "resolved_at": 0}',
        '{"digest": "md5:0123", "media_type": "x", "resolved_at": 0}',
        DEEP,
        '{"digest": "sha256:' + "0" * 64 + '", "media_type": "x", "resolved_at": ' + HUGE + "}",
    ],
    ids=["bad-digest", "bad-algorithm", "deep-json", "huge-time"],
)
async def test_hunt_a_tag_record_that_does_not_parse_is_no_record(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    planted: str,
) -> None:
    """docs/scale-out.md: "a tag record that does not parse is no record (logged), and the
    request goes on as a miss" - answered from the upstream, never a 4xx or 5xx of its own."""
    image = hub.add_image(REPO, "v1", [b"layer"])
    key = f"{KEY_PREFIX}repositories/docker.io/{REPO}/_tags/v1"
    await asyncio.to_thread(
        lambda: seaweedfs.client().put_object(Bucket=bucket, Key=key, Body=planted.encode())
    )
    mirror = await replica(make_mirror, tmp_path, "reader")
    status, body, _ = await get(session, mirror, f"/v2/{REPO}/manifests/v1")
    assert (status, body) == (200, image.manifest_bytes), body[:300]


# HUNT FAULT 5 -------------------------------------------------------------------------------

DAY = 86400.0
GRACE = 900.0


@pytest.fixture
def aging(bucket: str, mirror_config: dict[str, Any]) -> str:
    """The bucket, with 30 days of retention for the mirrors on it."""
    mirror_config["storage"]["max_unused_age"] = "30d"
    return bucket


async def janitor_pass(mirror: TestServer) -> None:
    janitor = mirror.app[MIRROR].upkeep.janitor
    await janitor.flush()
    await janitor.retain()


async def has_tag(mirror: TestServer, tag: str) -> bool:
    return await mirror.app[MIRROR].stores.metadata.get_tag("docker.io", REPO, tag) is not None


@pytest.mark.parametrize(
    "planted",
    [DEEP, '{"written_at": ' + HUGE + ', "tags": [], "digests": {}}'],
    ids=["deep-json", "huge-time"],
)
async def test_hunt_a_usage_report_that_does_not_parse_is_ignored(
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
    assert not await has_tag(mirror, "v1"), "retention did not run past a report that lies"


# HUNT FAULT 6: key space (upstream names "." and "..") ---


@pytest.mark.parametrize("upstream", ["..", ".", "a/../..", "%2e%2e"])
async def test_hunt_an_upstream_name_stays_in_its_folder(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    tmp_path: Path,
    upstream: str,
) -> None:
    """Upstream names come from the config, unchecked: whatever one is, its records stay
    under PREFIX/repositories/ and read back as written."""
    mirror = await replica(make_mirror, tmp_path, "only")
    records = records_of(mirror)
    image = hub.add_image(REPO, "v1", [b"layer"])
    row = TagRow(Digest.parse(image.manifest_digest), image.media_type, clock.now)
    await records.put_tag(upstream, REPO, "v1", row)
    await records.put_links(upstream, REPO, [row.digest])
    keys = set(await asyncio.to_thread(seaweedfs.objects, bucket, ""))
    outside = {k for k in keys if not k.startswith(f"{KEY_PREFIX}repositories/")}
    assert not outside, f"records of upstream {upstream!r} left their folder: {outside}"
    assert await records.get_tag(upstream, REPO, "v1") == row
    assert await records.has_link(upstream, REPO, row.digest)
    assert await records.list_tags(upstream, REPO) == ["v1"]
    # And another upstream's records are not this one's.
    assert await records.get_tag("docker.io", REPO, "v1") is None


# HUNT FAULT 7: purge through a replica that never served the tag ---


async def test_hunt_a_purge_through_any_replica_unserves_the_tag(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """docs/scale-out.md: "A purge ... through any replica removes the records ... from the
    bucket"; "tag purged through another replica: served by this one until its row is stale,
    not after". Behind a balancer the admin request may reach a replica that never served the
    tag: the purge must still reach the bucket's record."""
    hub.add_image(REPO, "v1", [b"layer"])
    serving = await replica(make_mirror, tmp_path, "serving")
    assert (await get(session, serving, f"/v2/{REPO}/manifests/v1"))[0] == 200
    other = await replica(make_mirror, tmp_path, "other")  # never asked for the tag
    async with session.delete(
        other.make_url(f"/admin/cache/{REPO}"),
        params={"tag": "v1"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as resp:
        assert resp.status == 200, await resp.text()
    await records_of(other).close()  # removals in flight done
    hub.faults.registry_status = 503
    clock.advance(5 * 60 + 1)
    status, _, _ = await get(session, serving, f"/v2/{REPO}/manifests/v1")
    assert status != 200, "a tag purged through another replica was served stale"


# HUNT FAULT 8: tag lists from planted keys ---


async def test_hunt_the_bucket_tag_list_holds_only_tags(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A key under _tags/ that is no tag name (nested, or not a tag) is no tag of the list."""
    hub.add_image(REPO, "v1", [b"layer"])
    first = await replica(make_mirror, tmp_path, "first")
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[0] == 200
    tags = f"{KEY_PREFIX}repositories/docker.io/{REPO}/_tags"

    def plant() -> None:
        client = seaweedfs.client()
        for name in ("nested/deeper", ".hidden", "x" * 200, "<script>"):
            client.put_object(Bucket=bucket, Key=f"{tags}/{name}", Body=b"{}")

    await asyncio.to_thread(plant)
    second = await replica(make_mirror, tmp_path, "second")
    hub.faults.registry_status = 503
    status, body, _ = await get(session, second, f"/v2/{REPO}/tags/list")
    assert (status, json.loads(body)) == (200, {"name": REPO, "tags": ["v1"]})


# HUNT HELD 9: retention when the bucket fails mid-exchange; a restart between sweep and delete ---


def blob_keys(image: Any) -> set[str]:
    digests = (image.config_digest, *image.layer_digests)
    return {f"{KEY_PREFIX}blobs/sha256/{digest.split(':', 1)[1]}" for digest in digests}


async def pull_all(session: aiohttp.ClientSession, mirror: TestServer, image: Any) -> None:
    assert (await get(session, mirror, f"/v2/{REPO}/manifests/{image.tag}"))[0] == 200
    for digest in (image.config_digest, *image.layer_digests):
        assert (await get(session, mirror, f"/v2/{REPO}/blobs/{digest}"))[0] == 200


@pytest.mark.parametrize("failing", ["get_object", "get_paginator"])
async def test_hunt_retention_waits_when_the_reports_cannot_be_read(
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
    assert await has_tag(first, "v1"), "retention removed on part of the picture"
    doomed = first.app[MIRROR].stores.metadata.database
    assert await doomed.scalar("SELECT count(*) FROM doomed") == 0


async def test_hunt_a_restart_between_sweep_and_delete_keeps_objects_doomed(
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
    assert not await has_tag(mirror, "v1")
    await mirror.close()
    restarted = await make_mirror(storage_path=tmp_path / "only")
    await janitor_pass(restarted)  # at once after the restart: still within the grace
    assert blob_keys(image) <= set(await asyncio.to_thread(seaweedfs.objects, aging, KEY_PREFIX))
    clock.advance(GRACE + 1)
    await janitor_pass(restarted)
    backend = restarted.app[MIRROR].stores.backend
    await backend.settled()  # type: ignore[attr-defined]
    left = set(await asyncio.to_thread(seaweedfs.objects, aging, KEY_PREFIX))
    assert not blob_keys(image) & left, "doomed objects outlived a restart"


# HUNT FAULT 10: a delete that fails after the grace ---


async def test_hunt_a_failed_delete_after_the_grace_is_tried_again(
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
    backend = mirror.app[MIRROR].stores.backend
    await backend.settled()  # type: ignore[attr-defined]
    monkeypatch.undo()
    clock.advance(GRACE + 1)  # the bucket answers again; a later pass
    await janitor_pass(mirror)
    await backend.settled()  # type: ignore[attr-defined]
    left = set(await asyncio.to_thread(seaweedfs.objects, aging, KEY_PREFIX))
    assert not blob_keys(image) & left, "objects whose delete failed once stay in the bucket"


# HUNT HELD 11: a client that goes away mid-lookup; purge-all through a fresh replica ---


async def test_hunt_a_client_gone_mid_lookup_does_not_break_the_others(
    hub: FakeHub,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer"])
    first = await replica(make_mirror, tmp_path, "first")
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[0] == 200
    paths = (f"/v2/{REPO}/manifests/v1", f"/v2/{REPO}/manifests/{image.manifest_digest}")
    for number, path in enumerate(paths):
        second = await replica(make_mirror, tmp_path, f"new-{number}")  # nothing indexed
        client = records_of(second)._blobs.client
        real = client.get_object
        gate, asked = asyncio.Event(), asyncio.Event()

        async def held(real: Any = real, gate: Any = gate, asked: Any = asked, **kw: Any) -> Any:
            asked.set()
            await gate.wait()
            return await real(**kw)

        monkeypatch.setattr(client, "get_object", held)
        leaver = asyncio.create_task(get(session, second, path))
        await asyncio.wait_for(asked.wait(), 10)
        stayers = [asyncio.create_task(get(session, second, path)) for _ in range(5)]
        await asyncio.sleep(0)
        leaver.cancel()  # its connection closes: the server cancels its handler
        await asyncio.gather(leaver, return_exceptions=True)
        gate.set()
        answers = await asyncio.gather(*stayers)
        assert {answer[:2] for answer in answers} == {(200, image.manifest_bytes)}, path


async def test_hunt_purge_everything_through_a_fresh_replica(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer"])
    serving = await replica(make_mirror, tmp_path, "serving")
    assert (await get(session, serving, f"/v2/{REPO}/manifests/v1"))[0] == 200
    assert (await get(session, serving, f"/v2/{REPO}/blobs/{image.layer_digests[0]}"))[0] == 200
    fresh = await replica(make_mirror, tmp_path, "fresh")
    async with session.delete(
        fresh.make_url("/admin/cache"), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
    await records_of(fresh).close()
    keys = set(await asyncio.to_thread(seaweedfs.objects, bucket, KEY_PREFIX))
    assert not {k for k in keys if "/repositories/" in k or "/manifests/" in k}, keys
    hub.faults.registry_status = 503
    clock.advance(5 * 60 + 1)
    assert (await get(session, serving, f"/v2/{REPO}/manifests/v1"))[0] != 200
    # (observed, not asserted: blobs only the other replica indexed stay in the bucket)


# HUNT FAULT 12: a locked (imported) tag on one replica, retention on another ---


async def test_hunt_a_tag_locked_on_one_replica_keeps_its_objects_in_the_bucket(
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
    assert await has_tag(importer, "v1"), "a locked tag aged out"
    await janitor_pass(other)
    clock.advance(GRACE + 1)
    await janitor_pass(importer)
    await janitor_pass(other)
    await other.app[MIRROR].stores.backend.settled()  # type: ignore[attr-defined]
    left = set(await asyncio.to_thread(seaweedfs.objects, aging, KEY_PREFIX))
    assert blob_keys(image) <= left, "another replica deleted the objects of a locked tag"


# HUNT FAULT 13: a purge whose removals the bucket refused ---


async def test_hunt_a_purge_the_bucket_refused_is_not_silently_undone(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A purge answered 200 while the bucket refused to remove the records: the replica that
    purged adopts the tag back from the bucket at the next request, and serves it."""
    hub.add_image(REPO, "v1", [b"layer"])
    mirror = await replica(make_mirror, tmp_path, "only")
    assert (await get(session, mirror, f"/v2/{REPO}/manifests/v1"))[0] == 200
    client = records_of(mirror)._blobs.client
    monkeypatch.setattr(client, "delete_objects", refusing("DeleteObjects"))
    async with session.delete(
        mirror.make_url(f"/admin/cache/{REPO}"),
        params={"tag": "v1"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as resp:
        purged = resp.status
    await records_of(mirror).close()
    monkeypatch.undo()
    hub.faults.registry_status = 503
    status, _, _ = await get(session, mirror, f"/v2/{REPO}/manifests/v1")
    assert purged != 200 or status != 200, (
        "the purge said 200, yet the purged tag is served again from the bucket's records"
    )


# HUNT HELD 14: huge objects where records are expected (held) ---


async def test_hunt_huge_records_are_ignored(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    import hashlib

    image = hub.add_image(REPO, "v1", [b"layer"])
    huge = b"{" + b" " * (5 * 1024 * 1024) + b"}"  # a manifest above the 4 MiB bound
    huge_digest = "sha256:" + hashlib.sha256(huge).hexdigest()
    tags = f"{KEY_PREFIX}repositories/docker.io/{REPO}"

    def plant() -> None:
        client = seaweedfs.client()
        record = {"digest": huge_digest, "media_type": image.media_type, "resolved_at": 0}
        padded = json.dumps(record).encode() + b" " * (100 * 1024)  # a record above 64 KiB
        client.put_object(Bucket=bucket, Key=f"{tags}/_tags/v1", Body=padded)
        client.put_object(
            Bucket=bucket,
            Key=f"{KEY_PREFIX}manifests/sha256/{huge_digest.split(':')[1]}",
            Body=huge,
            ContentType=image.media_type,
        )
        client.put_object(Bucket=bucket, Key=f"{tags}/_links/sha256/{huge_digest.split(':')[1]}")

    await asyncio.to_thread(plant)
    mirror = await replica(make_mirror, tmp_path, "reader")
    assert (await get(session, mirror, f"/v2/{REPO}/manifests/v1"))[:2] == (
        200,
        image.manifest_bytes,
    )
    status, body, _ = await get(session, mirror, f"/v2/{REPO}/manifests/{huge_digest}")
    assert status == 404 and json.loads(body)["errors"], (status, body[:200])
