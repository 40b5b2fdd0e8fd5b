"""A purge by repository, tag or manifest frees what only the purged content held, and nothing
that another tag, another repository or another manifest still reaches. Each case is checked as
an operator would: the answer of the admin API, the data folder, and what the next pulls cost
upstream (the fake hub counts every request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub, FakeImage
from fakes.client import MakeMirror, pull
from fakes.oci import ALL_MANIFEST_TYPES, OCI_INDEX, sha256_digest
from fakes.ops import assert_consistent, blob_path

TOKEN = "purge-graph-token-0123456789abc"
APP = "myorg/app"
OTHER = "myorg/other"
KB = 1000


async def admin(session: aiohttp.ClientSession, mirror: TestServer, path: str) -> Any:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.delete(mirror.make_url(path), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def get_manifest(
    session: aiohttp.ClientSession, mirror: TestServer, repo: str, ref: str
) -> bytes:
    url = mirror.make_url(f"/v2/{repo}/manifests/{ref}")
    async with session.get(url, headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}) as resp:
        assert resp.status == 200, (repo, ref, resp.status)
        return await resp.read()


async def get_blob(
    session: aiohttp.ClientSession, mirror: TestServer, repo: str, digest: str
) -> bytes:
    async with session.get(mirror.make_url(f"/v2/{repo}/blobs/{digest}")) as resp:
        assert resp.status == 200, (repo, digest, resp.status)
        body = await resp.read()
    assert sha256_digest(body) == digest
    return body


async def pull_by_digest(
    session: aiohttp.ClientSession, mirror: TestServer, repo: str, image: FakeImage
) -> None:
    body = await get_manifest(session, mirror, repo, image.manifest_digest)
    assert body == image.manifest_bytes
    for digest in (image.config_digest, *image.layer_digests):
        await get_blob(session, mirror, repo, digest)


def image_blobs(image: FakeImage) -> list[str]:
    return [image.config_digest, *image.layer_digests]


def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def upstream_gets(hub: FakeHub) -> int:
    """Manifest and blob GETs that reached the fake hub (HEADs that only confirm are free)."""
    return hub.count(server="registry", method="GET", path_contains="/manifests/") + hub.count(
        server="cdn", method="GET"
    )


async def test_a_tag_purge_keeps_the_manifest_another_tag_points_at(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    image = hub.add_image(APP, "v1", [hub.make_blob(200 * KB, seed=1)])
    hub.set_tag(APP, "stable", image.manifest_digest)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, image)
    await get_manifest(session, mirror, APP, "stable")
    before = assert_consistent(data_dir(tmp_path))

    answer = await admin(session, mirror, f"/admin/cache/{APP}?tag=v1")
    assert answer["tags"] == 1
    assert answer["digests"] == {"manifests": [], "blobs": []}
    assert (answer["manifests"], answer["blobs"], answer["bytes"]) == (0, 0, 0)
    after = assert_consistent(data_dir(tmp_path))
    assert after.rows == before.rows and after.manifests == 1 and after.tags == 1

    hub.reset_counts()
    assert await get_manifest(session, mirror, APP, "stable") == image.manifest_bytes
    assert hub.count() == 0  # the other tag is untouched
    await pull(session, mirror, image)  # v1 is resolved again; its content is still here
    assert hub.count(server="registry", path_contains="/manifests/v1") >= 1
    assert hub.count(server="cdn") == 0


async def test_a_repository_purge_keeps_base_layers_another_repository_uses(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    base = hub.make_blob(300 * KB, seed=10)
    app = hub.add_image(APP, "v1", [base, hub.make_blob(150 * KB, seed=11)])
    other = hub.add_image(OTHER, "v1", [base, hub.make_blob(170 * KB, seed=12)])
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, app)
    await pull(session, mirror, other)
    data = data_dir(tmp_path)
    before = assert_consistent(data)

    own = sorted([app.config_digest, app.layer_digests[1]])
    dry = await admin(session, mirror, f"/admin/cache/{APP}?dry_run=1")
    assert dry["digests"] == {"manifests": [app.manifest_digest], "blobs": own}
    assert dry["bytes"] == sum(before.rows[digest] for digest in own)
    assert assert_consistent(data) == before  # a dry run removes nothing

    answer = await admin(session, mirror, f"/admin/cache/{APP}")
    assert answer == {**dry, "dry_run": False}
    after = assert_consistent(data)
    assert before.file_bytes - after.file_bytes == dry["bytes"]
    assert blob_path(data, app.layer_digests[0]).exists()  # the shared base layer
    assert set(after.rows) == set(image_blobs(other))

    hub.reset_counts()
    await pull(session, mirror, other)
    assert hub.count() == 0
    await pull(session, mirror, app)
    assert hub.count(server="cdn", method="GET") == 2  # its config and own layer, not the base


async def test_an_index_purge_removes_its_children_and_their_own_layers(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    base = hub.make_blob(200 * KB, seed=20)
    amd64 = hub.add_image(APP, "amd64", [base, hub.make_blob(120 * KB, seed=21)])
    arm64 = hub.add_image(APP, "arm64", [base, hub.make_blob(130 * KB, seed=22)])
    for tag in ("amd64", "arm64"):
        hub.delete_tag(APP, tag)  # children reachable only through the index
    index = hub.add_index(APP, "v1", [amd64, arm64], OCI_INDEX)
    single = hub.add_image(OTHER, "v1", [base])
    mirror = await make_mirror(admin_token=TOKEN)
    await get_manifest(session, mirror, APP, "v1")
    await pull_by_digest(session, mirror, APP, amd64)  # one platform, as a client pulls it
    await pull(session, mirror, single)
    data = data_dir(tmp_path)
    before = assert_consistent(data)

    answer = await admin(session, mirror, f"/admin/cache/{APP}")
    # The arm64 child was never fetched: no row of it to remove.
    assert answer["digests"] == {
        "manifests": sorted([index, amd64.manifest_digest]),
        "blobs": sorted([amd64.config_digest, amd64.layer_digests[1]]),
    }
    assert answer["tags"] == 1
    after = assert_consistent(data)
    assert before.file_bytes - after.file_bytes == answer["bytes"]
    assert after.manifests == 1  # the other repository's image
    assert set(after.rows) == set(image_blobs(single))  # the base layer stays: it uses it
    hub.reset_counts()
    await pull(session, mirror, single)
    assert hub.count() == 0


async def test_a_manifest_purge_removes_it_everywhere_and_keeps_what_others_reference(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    base = hub.make_blob(200 * KB, seed=30)
    app = hub.add_image(APP, "v1", [base, hub.make_blob(100 * KB, seed=31)])
    hub.set_tag(APP, "latest", app.manifest_digest)
    other = hub.add_image(OTHER, "v1", [base])
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, app)
    await get_manifest(session, mirror, APP, "latest")
    await pull(session, mirror, other)

    answer = await admin(session, mirror, f"/admin/manifests/{app.manifest_digest}")
    assert answer["tags"] == 2  # both tags pointing at it
    assert answer["digests"] == {
        "manifests": [app.manifest_digest],
        "blobs": sorted([app.config_digest, app.layer_digests[1]]),
    }
    state = assert_consistent(data_dir(tmp_path))
    assert set(state.rows) == set(image_blobs(other))
    hub.reset_counts()
    await pull(session, mirror, other)
    assert hub.count() == 0


async def test_a_child_manifest_purge_keeps_the_index_and_the_other_child(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    base = hub.make_blob(200 * KB, seed=40)
    amd64 = hub.add_image(APP, "amd64", [base, hub.make_blob(120 * KB, seed=41)])
    arm64 = hub.add_image(APP, "arm64", [base, hub.make_blob(130 * KB, seed=42)])
    index = hub.add_index(APP, "v1", [amd64, arm64], OCI_INDEX)
    mirror = await make_mirror(admin_token=TOKEN)
    await get_manifest(session, mirror, APP, "v1")
    for child in (amd64, arm64):
        await pull_by_digest(session, mirror, APP, child)

    # The target goes although the index references it (an explicit target goes whatever holds
    # it); the base layer stays: the arm64 child, which the index keeps, references it.
    answer = await admin(session, mirror, f"/admin/manifests/{amd64.manifest_digest}")
    assert answer["digests"]["manifests"] == [amd64.manifest_digest]
    assert answer["digests"]["blobs"] == sorted([amd64.config_digest, amd64.layer_digests[1]])
    hub.reset_counts()
    assert (
        await get_manifest(session, mirror, APP, "v1")
        == hub.content.repo(APP).manifests[index].body
    )
    await pull_by_digest(session, mirror, APP, arm64)
    assert hub.count() == 0
    await pull_by_digest(session, mirror, APP, amd64)
    assert upstream_gets(hub) == 3  # the manifest, its config and own layer


async def test_a_by_digest_pull_in_another_repository_keeps_the_image(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app = hub.add_image(APP, "v1", [hub.make_blob(200 * KB, seed=50)])
    # The same image, known upstream under a second repository (a copy, a mount).
    hub.add_manifest(OTHER, app.manifest_bytes, app.media_type)
    for data in (hub.content.blob_bytes[app.config_digest], *app.layers):
        hub.add_blob(OTHER, data)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, app)
    await pull_by_digest(session, mirror, OTHER, app)
    before = assert_consistent(data_dir(tmp_path))

    answer = await admin(session, mirror, f"/admin/cache/{APP}")
    assert (answer["tags"], answer["manifests"], answer["blobs"]) == (1, 0, 0)
    assert assert_consistent(data_dir(tmp_path)).rows == before.rows
    hub.reset_counts()
    await pull_by_digest(session, mirror, OTHER, app)
    assert upstream_gets(hub) == 0


async def test_a_repository_purge_keeps_a_manifest_another_repository_tags(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    app = hub.add_image(APP, "v1", [hub.make_blob(200 * KB, seed=60)])
    hub.add_manifest(OTHER, app.manifest_bytes, app.media_type, tag="copy")
    for data in (hub.content.blob_bytes[app.config_digest], *app.layers):
        hub.add_blob(OTHER, data)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, app)
    assert await get_manifest(session, mirror, OTHER, "copy") == app.manifest_bytes
    before = assert_consistent(data_dir(tmp_path))

    dry = await admin(session, mirror, f"/admin/cache/{APP}?dry_run=1")
    assert dry["digests"] == {"manifests": [], "blobs": []}
    answer = await admin(session, mirror, f"/admin/cache/{APP}")
    assert answer == {**dry, "dry_run": False}
    assert answer["tags"] == 1
    after = assert_consistent(data_dir(tmp_path))
    assert (after.rows, after.manifests, after.tags) == (before.rows, 1, 1)
    hub.reset_counts()
    assert await get_manifest(session, mirror, OTHER, "copy") == app.manifest_bytes
    for digest in image_blobs(app):
        await get_blob(session, mirror, OTHER, digest)
    assert upstream_gets(hub) == 0
