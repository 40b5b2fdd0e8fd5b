"""Records in the bucket that lie, or a bucket that will not answer: a replica never serves
what a record says without checking it, never takes a bucket that does not answer for a purge,
and never lets a record leave its folder of the key space (docs/scale-out.md, "Untrusted" and
"Failure modes")."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.clock import FakeClock
from support.s3server import S3Server

from mirror.reference import Digest
from mirror.stores.records import TagRow

from .conftest import KEY_PREFIX
from .replicas import (
    DEEP,
    HUGE,
    get,
    records_of,
    refusing,
    replica,
)

REPO = "library/planted"


async def test_bucket_refusing_a_record_read_does_not_unserve_a_stale_tag(
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


async def test_a_record_from_the_future_is_not_fresh_forever(
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
async def test_a_tag_record_that_does_not_parse_is_no_record(
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


@pytest.mark.parametrize("upstream", ["..", ".", "a/../..", "%2e%2e"])
async def test_an_upstream_name_stays_in_its_folder(
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


async def test_the_bucket_tag_list_holds_only_tags(
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


async def test_huge_records_are_ignored(
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
