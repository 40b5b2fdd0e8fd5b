"""Retention (storage.max_unused_age) and pins (storage.pinned), with the injected clock: what no
client pulled for that long leaves by the purge's reference rules; pinned and recently pulled
content stays, and so does what it shares; a client being sent a blob meanwhile gets every
byte; eviction under max_size passes pinned content by, even when that leaves it over the bound.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes import FakeClock, FakeHub, FakeImage
from fakes.client import MakeMirror, pull
from fakes.oci import ALL_MANIFEST_TYPES, sha256_digest
from fakes.ops import assert_consistent, blob_path, metric_value, read_store, scrape
from support.poll import eventually

DAY = 86400.0
KB = 1000
MIB = 1024 * 1024
TOKEN = "retention-admin-token-0123456789"


@pytest.fixture
def retention_config(mirror_config: dict[str, Any]) -> dict[str, Any]:
    """30 days of retention; the janitor passes every 50 ms of real time (the age counts on
    the fake clock)."""
    storage = mirror_config["storage"]
    storage.update(max_unused_age="30d", flush_interval="50ms")
    storage["pinned"] = ["alpine:3.19", "myorg/pinned*"]  # alpine is library/alpine
    return mirror_config


def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def blobs_of(image: FakeImage) -> set[str]:
    return {image.config_digest, *image.layer_digests}


async def pull_by_digest(
    session: aiohttp.ClientSession, mirror: Any, image: FakeImage, repo: str | None = None
) -> None:
    name = repo or image.repo
    url = mirror.make_url(f"/v2/{name}/manifests/{image.manifest_digest}")
    async with session.get(url, headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}) as resp:
        assert resp.status == 200
        assert await resp.read() == image.manifest_bytes
    for digest in blobs_of(image):
        async with session.get(mirror.make_url(f"/v2/{name}/blobs/{digest}")) as resp:
            assert resp.status == 200
            assert sha256_digest(await resp.read()) == digest


async def test_aged_content_goes_while_pinned_and_recent_content_stays(
    retention_config: dict[str, Any],
    hub: FakeHub,
    make_mirror: MakeMirror,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    base = hub.make_blob(200 * KB, seed=1)
    old = hub.add_image("myorg/old", "v1", [base, hub.make_blob(100 * KB, seed=2)])
    recent = hub.add_image("myorg/recent", "v1", [base, hub.make_blob(110 * KB, seed=3)])
    pinned = hub.add_image("library/alpine", "3.19", [hub.make_blob(120 * KB, seed=4)])
    mirror = await make_mirror()
    for image in (old, recent, pinned):
        await pull(session, mirror, image)
    data = data_dir(tmp_path)
    before = assert_consistent(data)

    clock.advance(20 * DAY)
    await pull(session, mirror, recent)
    clock.advance(11 * DAY)  # old and pinned were last pulled 31 days ago, recent 11

    await eventually(lambda: read_store(data).tags == 2, what="retention removed the old tag")
    state = assert_consistent(data)
    gone = {old.config_digest, old.layer_digests[1]}
    assert set(state.rows) == blobs_of(recent) | blobs_of(pinned)
    assert state.manifests == 2
    assert not any(blob_path(data, digest).exists() for digest in gone)
    assert blob_path(data, old.layer_digests[0]).exists()  # the base layer recent shares

    metrics = await scrape(session, mirror)
    age = {"reason": "age"}
    assert metric_value(metrics, "mirror_retention_removed_total", {**age, "kind": "tag"}) == 1
    assert metric_value(metrics, "mirror_retention_removed_total", {**age, "kind": "manifest"}) == 1
    assert metric_value(metrics, "mirror_retention_removed_total", {**age, "kind": "blob"}) == 2
    freed = sum(before.rows[digest] for digest in gone)
    assert metric_value(metrics, "mirror_retention_removed_bytes_total", age) == freed

    hub.reset_counts()
    await pull(session, mirror, recent)
    await pull(session, mirror, pinned)
    assert hub.count(server="cdn") == 0  # only their tags are revalidated (the TTL passed)
    await pull(session, mirror, old)
    assert hub.count(server="cdn", method="GET") == 2  # its config and own layer, not the base


async def test_a_recent_pull_by_digest_keeps_the_image_whose_tag_aged_out(
    retention_config: dict[str, Any],
    hub: FakeHub,
    make_mirror: MakeMirror,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    image = hub.add_image("myorg/app", "v1", [hub.make_blob(150 * KB, seed=5)])
    mirror = await make_mirror()
    await pull(session, mirror, image)
    before = assert_consistent(data_dir(tmp_path))
    clock.advance(20 * DAY)
    await pull_by_digest(session, mirror, image)  # a deployment pinned to the digest
    clock.advance(11 * DAY)

    await eventually(lambda: read_store(data_dir(tmp_path)).tags == 0, what="the tag aged out")
    after = assert_consistent(data_dir(tmp_path))
    assert (after.rows, after.manifests) == (before.rows, 1)
    hub.reset_counts()
    await pull_by_digest(session, mirror, image)
    assert hub.count() == 0


async def test_a_blob_no_manifest_references_goes_when_unread_for_the_age(
    retention_config: dict[str, Any],
    hub: FakeHub,
    make_mirror: MakeMirror,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    unread = hub.add_blob("myorg/app", hub.make_blob(50 * KB, seed=6))
    read = hub.add_blob("myorg/app", hub.make_blob(60 * KB, seed=7))
    mirror = await make_mirror()
    for digest in (unread, read):
        async with session.get(mirror.make_url(f"/v2/myorg/app/blobs/{digest}")) as resp:
            assert resp.status == 200
            await resp.read()
    clock.advance(20 * DAY)
    async with session.get(mirror.make_url(f"/v2/myorg/app/blobs/{read}")) as resp:
        await resp.read()
    clock.advance(11 * DAY)
    await eventually(
        lambda: set(read_store(data_dir(tmp_path)).rows) == {read}, what="the unread blob went"
    )
    assert not blob_path(data_dir(tmp_path), unread).exists()


async def test_a_client_reading_a_blob_that_ages_out_gets_every_byte(
    retention_config: dict[str, Any],
    hub: FakeHub,
    make_mirror: MakeMirror,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    data = hub.make_blob(24 * MIB + 3, seed=8)
    image = hub.add_image("myorg/app", "v1", [data])
    mirror = await make_mirror()
    await pull(session, mirror, image)
    digest = image.layer_digests[0]
    folder = data_dir(tmp_path)
    url = mirror.make_url(f"/v2/myorg/app/blobs/{digest}")
    async with aiohttp.ClientSession() as reader, reader.get(url) as held:
        head = await held.content.readexactly(64 * 1024)  # then stop reading a while
        clock.advance(31 * DAY)
        await eventually(
            lambda: digest not in read_store(folder).rows, what="retention removed the row"
        )
        assert blob_path(folder, digest).exists()  # still being sent
        rest = await held.read()
    assert head + rest == data
    await eventually(lambda: not blob_path(folder, digest).exists(), what="the file went")
    assert assert_consistent(folder).rows == {}


async def test_a_download_running_while_its_image_ages_out_completes(
    retention_config: dict[str, Any],
    hub: FakeHub,
    make_mirror: MakeMirror,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    late = hub.make_blob(2 * MIB + 1, seed=9)
    image = hub.add_image("myorg/app", "v1", [hub.make_blob(100 * KB, seed=10), late])
    mirror = await make_mirror()
    async with session.get(
        mirror.make_url("/v2/myorg/app/manifests/v1"),
        headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)},
    ) as resp:
        assert resp.status == 200
    for digest in (image.config_digest, image.layer_digests[0]):
        async with session.get(mirror.make_url(f"/v2/myorg/app/blobs/{digest}")) as resp:
            await resp.read()
    gate = hub.faults.blob_gate = asyncio.Event()  # the upstream holds the second half
    url = mirror.make_url(f"/v2/myorg/app/blobs/{image.layer_digests[1]}")
    async with aiohttp.ClientSession() as client, client.get(url) as downloading:
        assert downloading.status == 200
        clock.advance(31 * DAY)
        await eventually(lambda: read_store(data_dir(tmp_path)).manifests == 0, what="aged out")
        gate.set()
        assert await downloading.read() == late
    # Stored by its fill after the sweep: an orphan now, which a later pass ages out in turn.
    await eventually(lambda: assert_consistent(data_dir(tmp_path)), what="store consistent")


async def test_eviction_passes_pinned_content_by_even_over_max_size(
    retention_config: dict[str, Any],
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    first = hub.add_image("myorg/pinned", "v1", [hub.make_blob(600 * KB, seed=11)])
    other = hub.add_image("myorg/other", "v1", [hub.make_blob(300 * KB, seed=12)])
    second = hub.add_image("myorg/pinned", "v2", [hub.make_blob(600 * KB, seed=13)])
    mirror = await make_mirror(max_size="1MB")
    for image in (first, other, second):  # `first` is the least recently used
        await pull(session, mirror, image)

    state = assert_consistent(data_dir(tmp_path))
    assert set(state.rows) == blobs_of(first) | blobs_of(second)
    assert state.file_bytes > 1_000_000  # over the bound: only pinned content is left
    metrics = await scrape(session, mirror)
    removed = {"reason": "size", "kind": "blob"}
    assert metric_value(metrics, "mirror_retention_removed_total", removed) == 2
    hub.reset_counts()
    await pull(session, mirror, first)
    await pull(session, mirror, second)
    assert hub.count() == 0


def bundle_of(hub: FakeHub, image: FakeImage, resolved_at: str) -> bytes:
    """An OCI image layout of one image, as `mirror export` or skopeo writes it, in a tar."""
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": image.media_type,
                "digest": image.manifest_digest,
                "size": len(image.manifest_bytes),
                "annotations": {
                    "org.opencontainers.image.ref.name": f"docker.io/{image.repo}:{image.tag}",
                    "mirror.resolved-at": resolved_at,
                },
            }
        ],
    }
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode()}
    files[f"blobs/sha256/{image.manifest_digest.split(':')[1]}"] = image.manifest_bytes
    for digest in blobs_of(image):
        files[f"blobs/sha256/{digest.split(':')[1]}"] = hub.content.blob_bytes[digest]
    files["index.json"] = json.dumps(index).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return out.getvalue()


async def test_imported_images_are_neither_aged_out_nor_evicted(
    retention_config: dict[str, Any],
    hub: FakeHub,
    make_mirror: MakeMirror,
    clock: FakeClock,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """A bundle's images are what an air-gapped site chose (its lock): only a purge removes
    them, while what clients merely pulled ages out and is evicted around them."""
    retention_config["storage"]["pinned"] = []
    chosen = hub.add_image(
        "myorg/chosen", "v1", [hub.make_blob(300 * KB, seed=40 + n) for n in (0, 1)]
    )
    old = hub.add_image("myorg/old", "v1", [hub.make_blob(300 * KB, seed=50)])
    later = hub.add_image("myorg/later", "v1", [hub.make_blob(300 * KB, seed=60)])
    mirror = await make_mirror(max_size="1MB", low_water=1.0, admin_token=TOKEN)
    data = data_dir(tmp_path)

    headers = {"Authorization": f"Bearer {TOKEN}"}
    body = bundle_of(hub, chosen, "2020-01-01T00:00:00Z")  # resolved long ago, imported now
    async with session.post(mirror.make_url("/admin/import"), data=body, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    hub.reset_counts()
    await pull(session, mirror, old)
    chosen_blobs = blobs_of(chosen)

    # Over max_size: the least recently used blobs are the imported ones, and they stay.
    await pull(session, mirror, later)
    state = assert_consistent(data)
    assert chosen_blobs <= set(state.rows), "eviction took an imported blob"
    assert old.layer_digests[0] not in state.rows  # what was only pulled made the room

    # Past max_unused_age: what was pulled ages out, the import does not.
    clock.advance(31 * DAY)
    await eventually(lambda: read_store(data).tags == 1, what="retention removed pulled tags")
    state = assert_consistent(data)
    assert set(state.rows) == chosen_blobs
    hub.reset_counts()
    await pull(session, mirror, chosen)
    assert hub.count(server="cdn") == 0
