"""Bounded disk: LRU eviction under storage.max_size, blobs larger than the bound, and the
reconciliation of a data folder a crash left behind."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub
from fakes.client import MakeMirror, pull
from fakes.oci import ALL_MANIFEST_TYPES, sha256_digest
from fakes.ops import (
    assert_consistent,
    blob_path,
    metric_value,
    read_store,
    scrape,
)
from support.poll import eventually

REPO = "library/disk"
MB = 1000 * 1000
MAX_SIZE = 20 * MB
LAYER = 5 * MB


def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def get_manifest(session: aiohttp.ClientSession, mirror: TestServer, tag: str) -> str:
    url = mirror.make_url(f"/v2/{REPO}/manifests/{tag}")
    async with session.get(url, headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}) as resp:
        assert resp.status == 200, resp.status
        return resp.headers["Docker-Content-Digest"]


async def get_blob(session: aiohttp.ClientSession, mirror: TestServer, digest: str) -> bytes:
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
        assert resp.status == 200, resp.status
        body = await resp.read()
    assert sha256_digest(body) == digest
    return body


async def under_bound(data: Path) -> None:
    """Eviction runs in the background: wait (bounded) until the files fit the bound again."""
    await eventually(
        lambda: read_store(data).file_bytes <= MAX_SIZE, what=f"blobs/ under {MAX_SIZE} bytes"
    )


async def test_lru_eviction_keeps_the_store_under_max_size(
    hub: FakeHub,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    data = data_dir(tmp_path)
    images = [hub.add_image(REPO, str(n), [hub.make_blob(LAYER, seed=n)]) for n in range(1, 5)]
    # A long flush interval: last-access times reach SQLite only because eviction flushes first.
    mirror = await make_mirror(max_size="20MB", low_water=0.9, flush_interval="1h")

    for image in images[:3]:
        await pull(session, mirror, image)
        await under_bound(data)
        clock.advance(1)
    first_layer = images[0].layer_digests[0]
    second_layer = images[1].layer_digests[0]
    third_layer = images[2].layer_digests[0]
    assert read_store(data).file_bytes > 3 * LAYER  # nothing evicted yet
    # Image 1 is used again: now image 2 is the least recently used.
    await get_blob(session, mirror, first_layer)
    clock.advance(1)
    hub.reset_counts()
    await pull(session, mirror, images[3])  # crosses 20 MB
    await under_bound(data)
    state = assert_consistent(data)
    assert second_layer not in state.rows, "the least recently used layer should go first"
    assert first_layer in state.rows, "a layer used after image 2 was evicted before it"
    assert third_layer in state.rows
    assert images[3].layer_digests[0] in state.rows
    assert state.file_bytes <= 0.9 * MAX_SIZE
    assert state.manifests == 4  # manifests are never evicted

    metrics = await scrape(session, mirror)
    assert (metric_value(metrics, "mirror_evicted_blobs_total") or 0) >= 1
    assert (metric_value(metrics, "mirror_evicted_bytes_total") or 0) >= LAYER
    assert metric_value(metrics, "mirror_storage_bytes") == state.file_bytes
    assert metric_value(metrics, "mirror_storage_blobs") == len(state.rows)
    assert metric_value(metrics, "mirror_storage_limit_bytes") == MAX_SIZE

    # Tags still resolve from cache within tag_ttl: manifests stayed.
    hub.reset_counts()
    for image in images:
        assert await get_manifest(session, mirror, image.tag) == image.manifest_digest
    assert hub.count() == 0

    # The evicted layer comes back on demand, from upstream, once.
    clock.advance(1)
    assert await get_blob(session, mirror, second_layer) == images[1].layers[0]
    assert hub.count(server="cdn", method="GET") == 1
    await under_bound(data)
    state = assert_consistent(data)
    assert second_layer in state.rows  # the newest blob is kept; older ones made room
    evicted = metric_value(await scrape(session, mirror), "mirror_evicted_blobs_total")
    assert evicted is not None and evicted >= 2


async def test_blob_larger_than_the_bound_is_served_and_not_stored(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = data_dir(tmp_path)
    small = hub.make_blob(100_000, seed=1)
    huge = hub.make_blob(3 * MB, seed=2)
    small_digest, huge_digest = hub.add_blob(REPO, small), hub.add_blob(REPO, huge)
    mirror = await make_mirror(max_size="2MB")
    assert await get_blob(session, mirror, small_digest) == small
    for attempt in (1, 2):
        assert await get_blob(session, mirror, huge_digest) == huge
        # Streamed through, never stored: each request downloads it again.
        assert hub.count(server="cdn", method="GET", path_contains=huge_digest) == attempt
        await eventually(lambda: not any((data / "tmp").iterdir()), what="tmp/ empty")
        state = assert_consistent(data)
        assert huge_digest not in state.rows
        assert not blob_path(data, huge_digest).exists()
        assert small_digest in state.rows  # the bound was never crossed: nothing evicted
    metrics = await scrape(session, mirror)
    assert metric_value(metrics, "mirror_storage_bytes") == len(small)
    assert (metric_value(metrics, "mirror_evicted_blobs_total") or 0) == 0


async def test_start_up_reconciles_what_a_crash_left(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = data_dir(tmp_path)
    layers = [hub.make_blob(200_000, seed=n) for n in range(3)]
    image = hub.add_image(REPO, "1", layers)
    mirror = await make_mirror()
    await pull(session, mirror, image)
    await mirror.close()  # runs the app's cleanup: the mirror is stopped

    # A temp file of a fill that was running, a row whose file vanished, a file with no row
    # (a blob committed just before a crash lost its row), and a file that is no digest at all.
    (data / "tmp" / "0123abcd.partial").write_bytes(b"half a layer")
    lost_file = image.layer_digests[0]
    blob_path(data, lost_file).unlink()
    orphan = hub.make_blob(50_000, seed=99)
    orphan_path = blob_path(data, sha256_digest(orphan))
    orphan_path.parent.mkdir(parents=True, exist_ok=True)
    orphan_path.write_bytes(orphan)
    junk = data / "blobs" / "sha256" / "zz" / "not-a-digest"
    junk.parent.mkdir(parents=True, exist_ok=True)
    junk.write_bytes(b"junk")
    before = read_store(data)
    assert lost_file in before.rows and sha256_digest(orphan) in before.files

    mirror = await make_mirror()
    state = assert_consistent(data)
    assert lost_file not in state.rows
    assert sha256_digest(orphan) not in state.files
    assert not junk.exists()
    assert set(state.rows) == {image.config_digest, *image.layer_digests[1:]}
    metrics = await scrape(session, mirror)
    assert metric_value(metrics, "mirror_storage_bytes") == state.file_bytes
    assert metric_value(metrics, "mirror_storage_blobs") == len(state.rows)

    hub.reset_counts()
    await pull(session, mirror, image)
    assert hub.count(server="cdn", method="GET") == 1  # only the blob whose file was lost
    assert lost_file in assert_consistent(data).rows


async def test_eviction_passes_by_a_blob_a_client_is_reading(
    hub: FakeHub,
    clock: FakeClock,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    data = data_dir(tmp_path)
    # 15 MB do not fit the socket buffers of a client that stopped reading: the mirror is
    # still sending the layer when the second image crosses the bound.
    held = hub.add_image(REPO, "held", [hub.make_blob(15 * MB, seed=21)])
    other = hub.add_image(REPO, "other", [hub.make_blob(LAYER, seed=22)])
    mirror = await make_mirror(max_size="20MB", low_water=0.9, flush_interval="1h")
    await pull(session, mirror, held)
    held_layer = held.layer_digests[0]
    url = mirror.make_url(f"/v2/{REPO}/blobs/{held_layer}")
    async with aiohttp.ClientSession() as reader, reader.get(url) as resp:
        assert resp.status == 200
        head = await resp.content.readexactly(64 * 1024)  # then stop reading for a while
        clock.advance(1)  # the held layer is now the least recently used blob
        await pull(session, mirror, other)  # crosses 20 MB
        await under_bound(data)
        state = assert_consistent(data)
        assert held_layer in state.rows, "evicted while a client was reading it"
        # Eviction did run (the older blobs went to make room), it only passed the held one by.
        evicted = metric_value(await scrape(session, mirror), "mirror_evicted_blobs_total")
        assert evicted, "nothing was evicted: the bound was never crossed"
        rest = await resp.read()
    assert head + rest == held.layers[0]
