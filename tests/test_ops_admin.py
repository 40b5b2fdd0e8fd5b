"""The admin API on a real socket: token rules, dry runs, purges (also during a fill), revalidate,
stats, gc and verify; the fake hub counts what each purge costs upstream afterwards."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeHub, FakeImage
from fakes.client import MakeMirror, oci_error_code, pull
from fakes.ops import assert_consistent, blob_path, flip_bytes, read_store
from support.poll import eventually
from yarl import URL

TOKEN = "ops-admin-token-0123456789abcdef"
REPO = "library/alpine"
MIB = 1024 * 1024
NO_DIGEST = "sha256:" + "0" * 64
ROUNDS = 8

ROUTES: list[tuple[str, str]] = [
    ("DELETE", "/admin/cache"),
    ("DELETE", f"/admin/cache/{REPO}"),
    ("DELETE", f"/admin/cache/{REPO}?tag=3.19"),
    ("DELETE", f"/admin/blobs/{NO_DIGEST}"),
    ("DELETE", f"/admin/manifests/{NO_DIGEST}"),
    ("POST", f"/admin/revalidate/{REPO}?tag=3.19"),
    ("GET", "/admin/stats"),
    ("POST", "/admin/gc"),
    ("POST", "/admin/verify"),
]


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def admin(
    session: aiohttp.ClientSession,
    mirror: TestServer,
    method: str,
    path: str,
    token: str = TOKEN,
    status: int = 200,
) -> dict[str, Any]:
    async with session.request(method, mirror.make_url(path), headers=auth(token)) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == status, (method, path, resp.status, body)
        assert resp.headers["Content-Type"].startswith("application/json")
        assert isinstance(body, dict)
        return body


async def fetch(session: aiohttp.ClientSession, url: URL) -> bytes:
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        return await resp.read()


def tmp_empty(data: Path) -> bool:
    return not any((data / "tmp").iterdir())


def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"  # the mirror_config fixture's storage.path


def add_image(hub: FakeHub, tag: str = "3.19", seed: int = 1, size: int = 300_000) -> FakeImage:
    return hub.add_image(REPO, tag, [hub.make_blob(size, seed=seed)])


# -- the token ------------------------------------------------------------------------------


async def test_admin_api_does_not_exist_without_a_token(
    make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    mirror = await make_mirror()
    for method, path in ROUTES:
        for headers in ({}, auth()):
            async with session.request(method, mirror.make_url(path), headers=headers) as resp:
                assert resp.status == 404, (method, path, resp.status)
                await oci_error_code(resp)


async def test_wrong_or_missing_token_is_401_and_changes_nothing(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    image = add_image(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, image)
    before = read_store(data_dir(tmp_path))
    hub.reset_counts()
    bad_headers: list[dict[str, str]] = [
        {},
        auth("ops-admin-token-0123456789abcdeX"),
        auth(TOKEN[:-1]),
        auth(TOKEN + "x"),
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ]
    for method, path in ROUTES:
        for headers in bad_headers:
            async with session.request(method, mirror.make_url(path), headers=headers) as resp:
                assert resp.status == 401, (method, path, headers, resp.status)
                assert await oci_error_code(resp) == "UNAUTHORIZED"
    # Nothing was purged, nothing was asked upstream (revalidate did not run).
    assert hub.count() == 0
    assert read_store(data_dir(tmp_path)) == before
    await pull(session, mirror, image)
    assert hub.count() == 0


# -- dry runs -------------------------------------------------------------------------------


async def test_dry_runs_count_and_delete_nothing(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    image = add_image(hub, size=400_000)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, image)
    config_size = len(hub.content.blob_bytes[image.config_digest])
    layer_size = len(image.layers[0])
    before = assert_consistent(data_dir(tmp_path))
    assert before.file_bytes == config_size + layer_size

    everything = await admin(session, mirror, "DELETE", "/admin/cache?dry_run=1")
    assert everything == {
        "tags": 1,
        "manifests": 1,
        "blobs": 2,
        "bytes": config_size + layer_size,
        "dry_run": True,
    }
    repo = await admin(session, mirror, "DELETE", f"/admin/cache/{REPO}?dry_run=1")
    image_blobs = sorted([image.config_digest, image.layer_digests[0]])
    assert repo == {
        "tags": 1,
        "manifests": 1,
        "blobs": 2,
        "bytes": config_size + layer_size,
        "dry_run": True,
        "digests": {"manifests": [image.manifest_digest], "blobs": image_blobs},
    }
    short = await admin(session, mirror, "DELETE", "/admin/cache/alpine?dry_run=true")
    assert short == repo  # Docker Hub naming: alpine is library/alpine
    one_tag = await admin(session, mirror, "DELETE", f"/admin/cache/{REPO}?tag=3.19&dry_run=1")
    assert one_tag == repo  # the repository's only tag
    other_tag = await admin(session, mirror, "DELETE", f"/admin/cache/{REPO}?tag=9.9&dry_run=1")
    assert other_tag["tags"] == 0
    blob = await admin(
        session, mirror, "DELETE", f"/admin/blobs/{image.layer_digests[0]}?dry_run=1"
    )
    assert blob == {
        "tags": 0,
        "manifests": 0,
        "blobs": 1,
        "bytes": layer_size,
        "dry_run": True,
        "digests": {"manifests": [], "blobs": [image.layer_digests[0]]},
    }
    manifest = await admin(
        session, mirror, "DELETE", f"/admin/manifests/{image.manifest_digest}?dry_run=1"
    )
    assert manifest == repo

    assert read_store(data_dir(tmp_path)) == before
    hub.reset_counts()
    await pull(session, mirror, image)
    assert hub.count() == 0, [(r.method, r.path) for r in hub.requests]


# -- real purges ----------------------------------------------------------------------------


async def test_purge_blob_fetches_it_again(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    image = add_image(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, image)
    layer = image.layer_digests[0]
    answer = await admin(session, mirror, "DELETE", f"/admin/blobs/{layer}")
    assert answer == {
        "tags": 0,
        "manifests": 0,
        "blobs": 1,
        "bytes": len(image.layers[0]),
        "dry_run": False,
        "digests": {"manifests": [], "blobs": [layer]},
    }
    state = assert_consistent(data_dir(tmp_path))
    assert layer not in state.rows and not blob_path(data_dir(tmp_path), layer).exists()
    assert (await admin(session, mirror, "DELETE", f"/admin/blobs/{layer}"))["blobs"] == 0

    hub.reset_counts()
    await pull(session, mirror, image)
    assert hub.count(server="cdn", method="GET") == 1  # the purged layer, nothing else
    assert hub.count(server="cdn", path_contains=image.config_digest) == 0
    assert layer in assert_consistent(data_dir(tmp_path)).rows


async def test_purge_manifest_resolves_the_tag_upstream_again(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    image = add_image(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, image)
    answer = await admin(session, mirror, "DELETE", f"/admin/manifests/{image.manifest_digest}")
    assert (answer["tags"], answer["manifests"], answer["blobs"]) == (1, 1, 2)
    state = assert_consistent(data_dir(tmp_path))
    assert (state.manifests, state.rows) == (0, {})  # its blobs went with it: nothing held them
    hub.reset_counts()
    await pull(session, mirror, image)
    assert hub.count(server="registry", method="GET", path_contains="/manifests/") == 1
    assert hub.count(server="cdn", method="GET") == 2


async def test_purge_one_tag_resolves_only_that_tag_upstream(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    old = add_image(hub, "3.19", seed=1)
    new = add_image(hub, "3.20", seed=2)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, old)
    await pull(session, mirror, new)
    answer = await admin(session, mirror, "DELETE", f"/admin/cache/{REPO}?tag=3.19")
    assert answer["tags"] == 1 and answer["dry_run"] is False
    hub.reset_counts()
    await pull(session, mirror, new)
    assert hub.count() == 0  # the other tag is still cached
    await pull(session, mirror, old)
    assert hub.count(server="registry", path_contains="/manifests/3.19") >= 1
    assert hub.count(server="cdn", method="GET") == 2  # its config and layer: only it held them


async def test_purge_repository_and_upstream_parameter(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    first = add_image(hub, "3.19", seed=1)
    second = add_image(hub, "3.20", seed=2)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, first)
    await pull(session, mirror, second)

    unknown = mirror.make_url("/admin/cache/alpine?upstream=ghcr.io")
    async with session.delete(unknown, headers=auth()) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) == "NAME_UNKNOWN"
    answer = await admin(session, mirror, "DELETE", "/admin/cache/alpine?upstream=docker.io")
    assert answer["tags"] == 2 and answer["dry_run"] is False
    hub.reset_counts()
    await pull(session, mirror, first)
    await pull(session, mirror, second)
    for tag in ("3.19", "3.20"):
        assert hub.count(server="registry", path_contains=f"/manifests/{tag}") >= 1


async def test_purge_everything_makes_every_pull_go_upstream(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    image = add_image(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, image)
    answer = await admin(session, mirror, "DELETE", "/admin/cache")
    assert answer["blobs"] == 2 and answer["tags"] == 1 and answer["manifests"] == 1
    assert answer["dry_run"] is False
    state = assert_consistent(data_dir(tmp_path))
    assert (state.rows, state.manifests, state.tags) == ({}, 0, 0)
    stats = await admin(session, mirror, "GET", "/admin/stats")
    assert stats["storage"]["bytes"] == 0 and stats["storage"]["blobs"] == 0
    hub.reset_counts()
    await pull(session, mirror, image)
    assert hub.count(server="registry", method="GET", path_contains="/manifests/3.19") == 1
    assert hub.count(server="cdn", method="GET") == 2
    assert len(assert_consistent(data_dir(tmp_path)).rows) == 2


@pytest.mark.parametrize("purge", ["everything", "the blob"])
async def test_purge_during_a_fill_lets_the_download_finish(
    purge: str,
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    data = hub.make_blob(4 * MIB + 5, seed=7)
    image = hub.add_image(REPO, "3.19", [data])
    digest = image.layer_digests[0]
    mirror = await make_mirror(admin_token=TOKEN)
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19")) as resp:
        assert resp.status == 200
    gate = asyncio.Event()
    hub.faults.blob_gate = gate

    async def download() -> bytes:
        async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
            assert resp.status == 200
            return await resp.read()

    client = asyncio.create_task(download())
    try:
        tmp = data_dir(tmp_path) / "tmp"
        # Held half-way: the upstream sent half of the blob and waits at the gate.
        await eventually(
            lambda: any(p.stat().st_size >= len(data) // 2 for p in tmp.iterdir()),
            what="the fill to reach the gate",
        )
        path = "/admin/cache" if purge == "everything" else f"/admin/blobs/{digest}"
        answer = await admin(session, mirror, "DELETE", path)
        assert answer["dry_run"] is False
    finally:
        gate.set()
    assert await asyncio.wait_for(client, 30) == data
    await eventually(lambda: hub.count(server="cdn", method="GET", status=200) == 1)
    await eventually(lambda: not any((data_dir(tmp_path) / "tmp").iterdir()), what="tmp/ empty")
    state = assert_consistent(data_dir(tmp_path))
    stats = await admin(session, mirror, "GET", "/admin/stats")
    assert stats["storage"] == {
        "bytes": state.file_bytes,
        "blobs": len(state.rows),
        "limit_bytes": 0,
    }
    # Whatever the purge left, the blob is served right, and the store stays consistent.
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{digest}")) as resp:
        assert resp.status == 200
        assert await resp.read() == data
    await eventually(lambda: not any((data_dir(tmp_path) / "tmp").iterdir()), what="tmp/ empty")
    assert_consistent(data_dir(tmp_path))


async def test_purge_everything_while_fills_complete_keeps_rows_and_files_together(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """`DELETE /admin/cache` sent while eight fresh fills run and finish. However each one falls
    (stored before, during or after the purge), every file keeps its row or goes with it: a
    correct mirror passes every round. A purge that deletes rows it did not list (committed
    while it ran) leaves files no row knows; the first round usually shows it."""
    for round_ in range(ROUNDS):
        data = tmp_path / f"round{round_}"
        mirror = await make_mirror(admin_token=TOKEN, storage_path=data)
        blobs = [hub.make_blob(150_000 + n * 1000, seed=1000 * round_ + n) for n in range(8)]
        digests = [hub.add_blob(REPO, blob) for blob in blobs]

        urls = [mirror.make_url(f"/v2/{REPO}/blobs/{digest}") for digest in digests]
        clients = [asyncio.create_task(fetch(session, url)) for url in urls]
        await admin(session, mirror, "DELETE", "/admin/cache")
        assert await asyncio.wait_for(asyncio.gather(*clients), 30) == blobs
        await eventually(functools.partial(tmp_empty, data), what="tmp/ empty")
        state = read_store(data)
        orphans = sorted(set(state.files) - set(state.rows))
        assert not orphans, f"round {round_}: {len(orphans)} of 8 stored files have no row"
        assert_consistent(data)
        stats = await admin(session, mirror, "GET", "/admin/stats")
        assert stats["storage"]["blobs"] == len(state.rows), (round_, stats["storage"])
        await mirror.close()


async def test_purge_while_a_client_reads_a_stored_blob(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = hub.make_blob(24 * MIB + 3, seed=11)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror(admin_token=TOKEN)
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    stored = blob_path(data_dir(tmp_path), digest)
    async with session.get(url) as resp:
        assert await resp.read() == data  # stored now
    async with aiohttp.ClientSession() as reader, reader.get(url) as resp:
        assert resp.status == 200
        head = await resp.content.readexactly(64 * 1024)  # then stop reading for a while
        answer = await admin(session, mirror, "DELETE", "/admin/cache")
        assert answer["blobs"] == 1 and answer["bytes"] == len(data)
        # The row is gone at once; the file stays while the mirror still sends it (24 MiB do
        # not fit the socket buffers of a client that stopped reading).
        assert stored.exists(), "the file was deleted under a client still reading it"
        rest = await resp.read()
    assert head + rest == data
    # The file goes once its last reader let go of it.
    await eventually(lambda: not stored.exists(), what="the purged file removed")
    state = assert_consistent(data_dir(tmp_path))
    assert state.rows == {}


async def test_admin_routes_validate_their_input(
    make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    mirror = await make_mirror(admin_token=TOKEN)
    cases = [
        ("DELETE", "/admin/blobs/sha256:xyz", 400, "DIGEST_INVALID"),
        ("DELETE", "/admin/manifests/md5:abc", 400, "DIGEST_INVALID"),
        ("DELETE", f"/admin/cache/{REPO}?tag=-bad", 400, "TAG_INVALID"),
        ("DELETE", "/admin/cache/Not_A..Name", 400, "NAME_INVALID"),
        ("POST", f"/admin/revalidate/{REPO}?tag=a%20b", 400, "TAG_INVALID"),
    ]
    for method, path, status, code in cases:
        async with session.request(method, mirror.make_url(path), headers=auth()) as resp:
            assert resp.status == status, (method, path, resp.status)
            assert await oci_error_code(resp) == code, (method, path)


# -- revalidate, stats, gc, verify ------------------------------------------------------------


async def test_revalidate_answers_old_and_new_digest(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    first = add_image(hub, "3.19", seed=1)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, first)
    moved = add_image(hub, "3.19", seed=2)  # the tag moves upstream, within tag_ttl
    hub.reset_counts()
    answer = await admin(session, mirror, "POST", f"/admin/revalidate/{REPO}?tag=3.19")
    assert answer["old"] == first.manifest_digest
    assert answer["new"] == moved.manifest_digest
    assert answer["changed"] is True
    # A HEAD re-checks the tag (free on Docker Hub); no GET by tag.
    assert hub.count(server="registry", method="GET", path_contains="/manifests/3.19") == 0
    hub.reset_counts()
    await pull(session, mirror, moved)  # the new digest is served without asking again
    assert hub.count(server="registry", path_contains="/manifests/") == 0

    again = await admin(session, mirror, "POST", "/admin/revalidate/alpine?tag=3.19")
    assert again["old"] == again["new"] == moved.manifest_digest
    assert again["changed"] is False

    never = mirror.make_url(f"/admin/revalidate/{REPO}?tag=nope")
    async with session.post(never, headers=auth()) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) == "MANIFEST_UNKNOWN"


async def test_stats_answer_storage_and_hit_ratio(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    image = add_image(hub, size=500_000)
    mirror = await make_mirror(admin_token=TOKEN)
    empty = await admin(session, mirror, "GET", "/admin/stats")
    assert empty["storage"]["bytes"] == 0 and empty["storage"]["blobs"] == 0
    assert empty["hit_ratio"] is None

    await pull(session, mirror, image)  # 1 tag miss, 2 blob misses
    await pull(session, mirror, image)  # 1 tag hit, 2 blob hits
    stats = await admin(session, mirror, "GET", "/admin/stats")
    state = assert_consistent(data_dir(tmp_path))
    assert stats["storage"]["bytes"] == state.file_bytes
    assert stats["storage"]["blobs"] == 2
    assert stats["manifests"] == 1 and stats["tags"] == 1
    assert stats["hit_ratio"] == pytest.approx(0.5)
    assert [u["name"] for u in stats["upstreams"]] == ["docker.io"]


async def test_gc_and_verify_on_a_running_server(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    image = add_image(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, image)
    assert await admin(session, mirror, "POST", "/admin/gc") == {
        "evicted_blobs": 0,
        "evicted_bytes": 0,
    }
    assert await admin(session, mirror, "POST", "/admin/verify") == {
        "checked": 2,
        "corrupt": [],
        "busy": 0,
    }
    layer = image.layer_digests[0]
    flip_bytes(blob_path(data_dir(tmp_path), layer), offset=1000)
    report = await admin(session, mirror, "POST", "/admin/verify")
    assert report["corrupt"] == [layer] and report["checked"] == 2
    state = assert_consistent(data_dir(tmp_path))
    assert layer not in state.rows
    stats = await admin(session, mirror, "GET", "/admin/stats")
    assert stats["storage"]["blobs"] == 1 and stats["storage"]["bytes"] == state.file_bytes
    hub.reset_counts()
    await pull(session, mirror, image)  # the right bytes again, from upstream
    assert hub.count(server="cdn", method="GET") == 1
