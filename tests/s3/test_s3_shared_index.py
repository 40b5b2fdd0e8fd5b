"""Tag records, manifests and repository links in the bucket: replicas on one bucket (each on
its own data folder, one fake clock) serve what another one cached, without the upstream, and
stop serving a tag another one purged once their own record of it is stale.

The fake hub stands in for the upstream because it can be switched off and counts every
request; the bucket is on a real S3 server (it checks signatures).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.clock import FakeClock
from fakes.oci import ALL_MANIFEST_TYPES
from fakes.ops import metric_value, scrape
from support.poll import eventually
from support.s3server import S3Server

from .conftest import KEY_PREFIX

REPO = "library/shared"
TOKEN = "shared-index-admin-token"
ACCEPT = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}


async def replica(make_mirror: MakeMirror, tmp_path: Path, name: str) -> TestServer:
    """A mirror on its own empty data folder, on the test's bucket."""
    return await make_mirror(storage_path=tmp_path / name, tag_ttl="5m", admin_token=TOKEN)


async def get(
    session: aiohttp.ClientSession, mirror: TestServer, path: str
) -> tuple[int, bytes, str]:
    async with session.get(mirror.make_url(path), headers=ACCEPT) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


def records(seaweedfs: S3Server, bucket: str) -> set[str]:
    """The bucket's keys other than blobs, without the prefix."""
    keys = seaweedfs.objects(bucket, KEY_PREFIX)
    return {
        key.removeprefix(KEY_PREFIX) for key in keys if not key.startswith(KEY_PREFIX + "blobs/")
    }


def hex_of(digest: str) -> str:
    return digest.split(":", 1)[1]


async def test_a_new_replica_serves_an_image_with_the_upstream_down(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer one" * 1000, b"layer two" * 1000])
    first = await replica(make_mirror, tmp_path, "first")
    status, body, _ = await get(session, first, f"/v2/{REPO}/manifests/v1")
    assert (status, body) == (200, image.manifest_bytes)
    for digest in (image.config_digest, *image.layer_digests):
        assert (await get(session, first, f"/v2/{REPO}/blobs/{digest}"))[0] == 200

    # What the bucket says about the image, besides its blobs.
    repository = f"repositories/docker.io/{REPO}"
    linked = {image.manifest_digest, image.config_digest, *image.layer_digests}
    assert await asyncio.to_thread(records, seaweedfs, bucket) == {
        f"manifests/sha256/{hex_of(image.manifest_digest)}",
        f"{repository}/_tags/v1",
        *(f"{repository}/_links/sha256/{hex_of(digest)}" for digest in linked),
    }

    hub.faults.registry_status = 503
    hub.reset_counts()
    second = await replica(make_mirror, tmp_path, "second")
    status, body, media_type = await get(session, second, f"/v2/{REPO}/manifests/v1")
    assert (status, body, media_type) == (200, image.manifest_bytes, image.media_type)
    by_digest = await get(session, second, f"/v2/{REPO}/manifests/{image.manifest_digest}")
    assert by_digest[:2] == (200, image.manifest_bytes)
    for digest, layer in zip(image.layer_digests, image.layers, strict=True):
        assert await get(session, second, f"/v2/{REPO}/blobs/{digest}") == (
            200,
            layer,
            "application/octet-stream",
        )
    # A third replica asked for a layer before any manifest: the bucket's link vouches for it.
    third = await replica(make_mirror, tmp_path, "third")
    unlinked = image.layer_digests[1]
    assert (await get(session, third, f"/v2/{REPO}/blobs/{unlinked}"))[:2] == (
        200,
        image.layers[1],
    )
    # Served as fresh from the first replica's record: not even a failed try upstream.
    assert hub.count(server="registry") == 0, hub.records()

    # The tag list is always asked upstream first; it cannot answer, the bucket's records can
    # (the third replica never indexed a tag).
    hub.add_image(REPO, "v2", [b"never pulled"])
    status, body, _ = await get(session, third, f"/v2/{REPO}/tags/list")
    assert (status, json.loads(body)) == (200, {"name": REPO, "tags": ["v1"]})


async def test_a_fresh_record_spares_the_upstream_and_a_stale_one_is_revalidated(
    hub: FakeHub,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    old = hub.add_image(REPO, "v1", [b"old layer"])
    first = await replica(make_mirror, tmp_path, "first")
    second = await replica(make_mirror, tmp_path, "second")
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[1] == old.manifest_bytes

    hub.reset_counts()
    assert (await get(session, second, f"/v2/{REPO}/manifests/v1"))[1] == old.manifest_bytes
    assert hub.count(server="registry") == 0, "a fresh record in the bucket was resolved again"

    # The tag moves upstream; once the record is stale, the next replica asks, and records the
    # new answer for the others.
    new = hub.add_image(REPO, "v1", [b"new layer"])
    clock.advance(5 * 60 + 1)
    assert (await get(session, second, f"/v2/{REPO}/manifests/v1"))[1] == new.manifest_bytes
    hub.reset_counts()
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[1] == new.manifest_bytes
    assert hub.count(server="registry") == 0, "the newer record in the bucket was not used"


async def test_a_purged_tag_is_not_served_stale_by_another_replica(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer"])
    hub.add_image(REPO, "kept", [b"other layer"])
    first = await replica(make_mirror, tmp_path, "first")
    second = await replica(make_mirror, tmp_path, "second")
    for tag in ("v1", "kept"):
        assert (await get(session, first, f"/v2/{REPO}/manifests/{tag}"))[0] == 200
        assert (await get(session, second, f"/v2/{REPO}/manifests/{tag}"))[0] == 200

    hub.faults.registry_status = 503
    clock.advance(5 * 60 + 1)
    # Stale everywhere, upstream down: served stale (the record is still in the bucket).
    assert (await get(session, second, f"/v2/{REPO}/manifests/v1"))[1] == image.manifest_bytes

    purge = first.make_url(f"/admin/cache/{REPO}")
    async with session.delete(
        purge, params={"tag": "v1"}, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["tags"] == 1
    tag_key = f"repositories/docker.io/{REPO}/_tags/v1"
    await eventually(
        lambda: asyncio.to_thread(lambda: tag_key not in records(seaweedfs, bucket)),
        what="the tag's record left the bucket",
    )

    status, body, _ = await get(session, second, f"/v2/{REPO}/manifests/v1")
    assert status != 200, "a tag purged through another replica was served stale"
    assert json.loads(body)["errors"], body
    # Another tag of the repository is untouched.
    assert (await get(session, second, f"/v2/{REPO}/manifests/kept"))[0] == 200


async def test_purging_everything_through_one_replica_empties_the_records(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    hub.add_image(REPO, "v1", [b"layer"])
    first = await replica(make_mirror, tmp_path, "first")
    second = await replica(make_mirror, tmp_path, "second")
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[0] == 200
    assert (await get(session, second, f"/v2/{REPO}/manifests/v1"))[0] == 200
    async with session.delete(
        first.make_url("/admin/cache"), headers={"Authorization": f"Bearer {TOKEN}"}
    ) as resp:
        assert resp.status == 200, await resp.text()
    await eventually(
        lambda: asyncio.to_thread(lambda: not records(seaweedfs, bucket)),
        what="every record left the bucket",
    )
    hub.faults.registry_status = 503
    clock.advance(5 * 60 + 1)
    assert (await get(session, second, f"/v2/{REPO}/manifests/v1"))[0] != 200


async def test_records_that_lie_are_not_served(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """Anyone with write access to the bucket could plant records: a manifest whose bytes do
    not match its key's digest is never served, and a record that does not parse is none."""
    image = hub.add_image(REPO, "v1", [b"layer"])
    other = hub.add_image(REPO, "other", [b"another layer"])
    tags = f"{KEY_PREFIX}repositories/docker.io/{REPO}/_tags"
    manifest_key = f"{KEY_PREFIX}manifests/sha256/{hex_of(image.manifest_digest)}"
    record = {"digest": image.manifest_digest, "media_type": image.media_type, "resolved_at": 0}

    def plant() -> None:
        client = seaweedfs.client()
        client.put_object(
            Bucket=bucket, Key=manifest_key, Body=other.manifest_bytes, ContentType=image.media_type
        )
        client.put_object(Bucket=bucket, Key=f"{tags}/v1", Body=json.dumps(record).encode())
        client.put_object(Bucket=bucket, Key=f"{tags}/other", Body=b"{not json")

    await asyncio.to_thread(plant)
    mirror = await replica(make_mirror, tmp_path, "reader")
    hub.faults.registry_status = 503
    status, body, _ = await get(session, mirror, f"/v2/{REPO}/manifests/v1")
    assert status != 200 and body != other.manifest_bytes, "planted bytes were served"
    by_digest = await get(session, mirror, f"/v2/{REPO}/manifests/{image.manifest_digest}")
    assert by_digest[0] != 200 and by_digest[1] != other.manifest_bytes
    assert (await get(session, mirror, f"/v2/{REPO}/manifests/other"))[0] != 200
    # The upstream back: the real bytes, from it.
    hub.faults.registry_status = None
    assert (await get(session, mirror, f"/v2/{REPO}/manifests/v1"))[:2] == (
        200,
        image.manifest_bytes,
    )
    assert (await get(session, mirror, f"/v2/{REPO}/manifests/other"))[:2] == (
        200,
        other.manifest_bytes,
    )


async def test_a_storm_on_a_stale_tag_reads_its_record_once(
    hub: FakeHub,
    bucket: str,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer"])
    first = await replica(make_mirror, tmp_path, "first")
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[0] == 200
    second = await replica(make_mirror, tmp_path, "second")

    async def reads() -> float:
        labels = {"operation": "GetObject", "status": "2xx"}
        text = await scrape(session, second)
        return metric_value(text, "mirror_bucket_requests_total", labels) or 0.0

    before = await reads()
    answers = await asyncio.gather(
        *(get(session, second, f"/v2/{REPO}/manifests/v1") for _ in range(40))
    )
    assert {answer[:2] for answer in answers} == {(200, image.manifest_bytes)}
    # The tag's record and its manifest, read once for the forty clients.
    assert await reads() - before == 2


async def test_a_storm_on_a_manifest_by_digest_reads_it_once(
    hub: FakeHub,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image(REPO, "v1", [b"layer"])
    first = await replica(make_mirror, tmp_path, "first")
    assert (await get(session, first, f"/v2/{REPO}/manifests/v1"))[0] == 200
    second = await replica(make_mirror, tmp_path, "second")

    async def requests() -> dict[str, float]:
        text = await scrape(session, second)
        return {
            operation: metric_value(text, "mirror_bucket_requests_total", {"operation": operation})
            or 0.0
            for operation in ("GetObject", "HeadObject")
        }

    before = await requests()
    path = f"/v2/{REPO}/manifests/{image.manifest_digest}"
    answers = await asyncio.gather(*(get(session, second, path) for _ in range(40)))
    assert {answer[:2] for answer in answers} == {(200, image.manifest_bytes)}
    after = await requests()
    # One read of the manifest, one look for its link, for the forty clients.
    assert {op: after[op] - before[op] for op in after} == {"GetObject": 1, "HeadObject": 1}
