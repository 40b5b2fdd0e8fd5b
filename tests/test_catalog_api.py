"""`GET /admin/catalog` against the fake hub: tag counts, unique and shared bytes, pull times,
an index's platforms, pagination (`n`, `last`, bounds, a bad `n`), the prefix and upstream
filters, an unknown repository, and the admin token."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub, FakeImage
from fakes.client import MakeMirror, oci_error_code, pull
from fakes.oci import ALL_MANIFEST_TYPES
from fakes.ops import assert_consistent

from mirror.stores.catalog import platforms_of
from mirror.web.appkeys import MIRROR

TOKEN = "catalog-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def stamp(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


async def get(
    session: aiohttp.ClientSession,
    mirror: TestServer,
    path: str,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Any:
    url = mirror.make_url(path)
    async with session.get(url, headers=AUTH if headers is None else headers) as resp:
        body = await resp.json(content_type=None)
        assert resp.status == status, (path, resp.status, body)
        return body


async def fetch(session: aiohttp.ClientSession, mirror: TestServer, path: str) -> bytes:
    headers = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
    async with session.get(mirror.make_url(path), headers=headers) as resp:
        assert resp.status == 200, (path, resp.status)
        return await resp.read()


async def pull_index(
    session: aiohttp.ClientSession, mirror: TestServer, repo: str, tag: str, images: list[FakeImage]
) -> None:
    """What `skopeo copy --all` does: the index by tag, then every platform's image."""
    await fetch(session, mirror, f"/v2/{repo}/manifests/{tag}")
    for image in images:
        await fetch(session, mirror, f"/v2/{repo}/manifests/{image.manifest_digest}")
        for digest in (image.config_digest, *image.layer_digests):
            await fetch(session, mirror, f"/v2/{repo}/blobs/{digest}")


async def flush(mirror: TestServer) -> None:
    """Write the batched pull times now (the janitor does it every flush_interval)."""
    await mirror.app[MIRROR].upkeep.janitor.flush()


class Shop:
    """Two repositories sharing a base layer: library/alpine (one image) and team/app (an
    image and an index of two platforms)."""

    def __init__(self, hub: FakeHub) -> None:
        self.hub = hub
        base = hub.make_blob(200_000, seed=1)
        self.alpine = hub.add_image("library/alpine", "3.19", [base, hub.make_blob(50_000, seed=2)])
        self.app = hub.add_image("team/app", "1", [base, hub.make_blob(70_000, seed=3)])
        self.amd64 = hub.add_image("team/app", "amd64", [base, hub.make_blob(30_000, seed=4)])
        self.arm64 = hub.add_image("team/app", "arm64", [hub.make_blob(40_000, seed=5)])
        hub.add_index("team/app", "multi", [self.amd64, self.arm64])
        self.base = len(base)

    def size(self, *images: FakeImage) -> int:
        """The bytes of these images' configs and layers, each blob once."""
        digests = {d for image in images for d in (image.config_digest, *image.layer_digests)}
        return sum(len(self.hub.content.blob_bytes[digest]) for digest in digests)

    async def pull_all(self, session: aiohttp.ClientSession, mirror: TestServer) -> None:
        await pull(session, mirror, self.alpine)
        await pull(session, mirror, self.app)
        await pull_index(session, mirror, "team/app", "multi", [self.amd64, self.arm64])


async def test_repositories_with_tags_unique_and_shared_bytes_and_last_pull(
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    shop = Shop(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    resolved = clock.now
    await shop.pull_all(session, mirror)

    answer = await get(session, mirror, "/admin/catalog")
    assert answer["next"] is None
    alpine, app = answer["repositories"]
    assert alpine == {
        "upstream": "docker.io",
        "repository": "library/alpine",
        "tags": 1,
        "bytes": {"unique": shop.size(shop.alpine) - shop.base, "shared": shop.base},
        "last_pulled": stamp(resolved),  # a new tag counts as pulled when resolved
    }
    images = (shop.app, shop.amd64, shop.arm64)
    assert app["repository"] == "team/app" and app["tags"] == 2
    assert app["bytes"] == {"unique": shop.size(*images) - shop.base, "shared": shop.base}
    # Every blob on disk is held by a repository: unique bytes plus the shared layer once.
    on_disk = assert_consistent(tmp_path / "data").file_bytes
    assert alpine["bytes"]["unique"] + app["bytes"]["unique"] + shop.base == on_disk

    # A pull an hour later (a hit) is seen once the janitor flushed the batch of pull times.
    clock.advance(3600)
    await pull(session, mirror, shop.alpine)
    await flush(mirror)
    alpine, app = (await get(session, mirror, "/admin/catalog"))["repositories"]
    assert alpine["last_pulled"] == stamp(resolved + 3600)
    assert app["last_pulled"] == stamp(resolved)


async def test_one_repository_lists_tags_with_platforms_and_its_totals(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    shop = Shop(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    resolved = clock.now
    await shop.pull_all(session, mirror)
    clock.advance(60)
    await fetch(session, mirror, "/v2/team/app/manifests/multi")
    await flush(mirror)

    detail = await get(session, mirror, "/admin/catalog/team/app")
    listed = (await get(session, mirror, "/admin/catalog?prefix=team/"))["repositories"]
    assert {k: v for k, v in detail.items() if k != "tag_list"} == listed[0]
    assert detail["last_pulled"] == stamp(resolved + 60)
    index_digest = hub.content.repo("team/app").tags["multi"]
    assert detail["tag_list"] == [
        {
            "tag": "1",
            "digest": shop.app.manifest_digest,
            "media_type": shop.app.media_type,
            "platforms": None,
            "resolved_at": stamp(resolved),
            "last_pulled": stamp(resolved),
        },
        {
            "tag": "multi",
            "digest": index_digest,
            "media_type": "application/vnd.oci.image.index.v1+json",
            "platforms": ["linux/amd64", "linux/arm64"],
            "resolved_at": stamp(resolved),
            "last_pulled": stamp(resolved + 60),
        },
    ]
    # Docker Hub's short name, as a client pulls it.
    short = await get(session, mirror, "/admin/catalog/alpine")
    assert short["repository"] == "library/alpine" and short["tag_list"][0]["tag"] == "3.19"


async def test_unknown_or_invalid_repository_and_unknown_upstream(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    shop = Shop(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, shop.alpine)
    for path, status, code in [
        ("/admin/catalog/team/app", 404, "NAME_UNKNOWN"),  # at the hub, but never pulled
        ("/admin/catalog/library/alpine?upstream=nowhere", 404, "NAME_UNKNOWN"),
        ("/admin/catalog?upstream=nowhere", 404, "NAME_UNKNOWN"),
        ("/admin/catalog/Not..Valid", 400, "NAME_INVALID"),
    ]:
        async with session.get(mirror.make_url(path), headers=AUTH) as resp:
            assert resp.status == status, (path, resp.status)
            assert await oci_error_code(resp) == code, path


async def pull_tags(
    hub: FakeHub, session: aiohttp.ClientSession, mirror: TestServer, repos: list[str]
) -> None:
    """One small image per repository, its manifest pulled (enough for a tag and links)."""
    for seed, repo in enumerate(repos, start=10):
        image = hub.add_image(repo, "v1", [hub.make_blob(1000, seed=seed)])
        await fetch(session, mirror, f"/v2/{repo}/manifests/{image.tag}")


REPOS = ["team/a", "team/b", "team/c", "tools/d", "tools/e"]


async def test_pages_follow_next_and_n_is_bounded_and_strict(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    mirror = await make_mirror(admin_token=TOKEN)
    await pull_tags(hub, session, mirror, REPOS)
    seen: list[str] = []
    pages: list[int] = []
    path = "/admin/catalog?n=2"
    while True:
        answer = await get(session, mirror, path)
        pages.append(len(answer["repositories"]))
        seen.extend(r["repository"] for r in answer["repositories"])
        if answer["next"] is None:
            break
        path = f"/admin/catalog?n=2&last={answer['next']}"
    assert seen == REPOS and pages == [2, 2, 1]
    # An exact fit ends with a null next, not with an empty page.
    assert (await get(session, mirror, "/admin/catalog?n=5"))["next"] is None
    assert (await get(session, mirror, "/admin/catalog?n=4"))["next"] == "docker.io:tools/d"
    # Leading zeros are digits; a huge n is clamped (not int()-ed), like the registry's.
    for n in ("0002", "1000", "1001", "9" * 5000):
        assert len((await get(session, mirror, f"/admin/catalog?n={n}"))["repositories"]) == (
            2 if n == "0002" else 5
        )
    for bad in ("0", "000", "-1", "abc", "1.5", "1e3", "\u00b2", "", " 2", "0x10"):
        async with session.get(
            mirror.make_url("/admin/catalog"), params={"n": bad}, headers=AUTH
        ) as resp:
            assert resp.status == 400, (bad, resp.status)
            assert await oci_error_code(resp) == "PAGINATION_NUMBER_INVALID", bad
    # `last` as a bare repository name needs the upstream it belongs to.
    async with session.get(mirror.make_url("/admin/catalog?last=team/b"), headers=AUTH) as resp:
        assert resp.status == 400
        assert await oci_error_code(resp) == "PAGINATION_NUMBER_INVALID"
    after = await get(session, mirror, "/admin/catalog?upstream=docker.io&last=team/b")
    assert [r["repository"] for r in after["repositories"]] == REPOS[2:]
    # Past the end, and a cursor from nowhere: an empty page, never an error.
    assert (await get(session, mirror, "/admin/catalog?last=zzz:zzz"))["repositories"] == []
    assert len((await get(session, mirror, "/admin/catalog?last=:"))["repositories"]) == 5


@pytest.fixture
async def ghcr() -> AsyncIterator[FakeHub]:
    async with FakeHub() as fake:
        yield fake


async def test_prefix_and_upstream_filters(
    hub: FakeHub,
    ghcr: FakeHub,
    mirror_config: dict[str, Any],
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    mirror_config["upstreams"].append({"name": "ghcr.io", "url": ghcr.url})
    mirror = await make_mirror(admin_token=TOKEN)
    await pull_tags(hub, session, mirror, REPOS)
    tool = ghcr.add_image("team/a", "v1", [ghcr.make_blob(1000, seed=99)])
    await fetch(session, mirror, f"/v2/ghcr.io/team/a/manifests/{tool.tag}")

    def names(answer: Any) -> list[str]:
        return [f"{r['upstream']}/{r['repository']}" for r in answer["repositories"]]

    everything = names(await get(session, mirror, "/admin/catalog"))
    assert everything == [f"docker.io/{repo}" for repo in REPOS] + ["ghcr.io/team/a"]
    teams = names(await get(session, mirror, "/admin/catalog?prefix=team/"))
    assert teams == ["docker.io/team/a", "docker.io/team/b", "docker.io/team/c", "ghcr.io/team/a"]
    assert names(await get(session, mirror, "/admin/catalog?upstream=ghcr.io")) == [
        "ghcr.io/team/a"
    ]
    filtered = await get(session, mirror, "/admin/catalog?upstream=docker.io&prefix=tools")
    assert names(filtered) == ["docker.io/tools/d", "docker.io/tools/e"]
    # A prefix is literal: SQL wildcards match nothing.
    assert names(await get(session, mirror, "/admin/catalog?prefix=%25")) == []
    assert names(await get(session, mirror, "/admin/catalog?prefix=team_")) == []
    # A page boundary between two upstreams' repositories of one name loses neither.
    first = await get(session, mirror, "/admin/catalog?prefix=team/a&n=1")
    assert names(first) == ["docker.io/team/a"] and first["next"] == "docker.io:team/a"
    second = await get(session, mirror, f"/admin/catalog?prefix=team/a&n=1&last={first['next']}")
    assert names(second) == ["ghcr.io/team/a"] and second["next"] is None
    # One repository of the second upstream: by upstream=, or by its host prefix.
    by_query = await get(session, mirror, "/admin/catalog/team/a?upstream=ghcr.io")
    by_prefix = await get(session, mirror, "/admin/catalog/ghcr.io/team/a")
    assert by_query == by_prefix and by_query["upstream"] == "ghcr.io"
    assert by_query["tag_list"][0]["digest"] == tool.manifest_digest


async def test_the_admin_token_guards_the_catalog(
    make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    paths = ["/admin/catalog", "/admin/catalog?n=abc", "/admin/catalog/library/alpine"]
    closed = await make_mirror()
    for path in paths:
        for headers in ({}, AUTH):
            async with session.get(closed.make_url(path), headers=headers) as resp:
                assert resp.status == 404, (path, resp.status)
                assert await oci_error_code(resp) == "NOT_FOUND"
    await closed.close()  # it holds the data folder
    guarded = await make_mirror(admin_token=TOKEN)
    for path in paths:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": TOKEN}):
            async with session.get(guarded.make_url(path), headers=headers) as resp:
                assert resp.status == 401, (path, headers, resp.status)
                assert await oci_error_code(resp) == "UNAUTHORIZED"


async def test_a_repository_pulled_only_by_digest_has_no_tags_and_a_pull_time_once_flushed(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, clock: FakeClock
) -> None:
    image = hub.add_image("pinned/tool", "v1", [hub.make_blob(5000, seed=7)])
    mirror = await make_mirror(admin_token=TOKEN)
    await fetch(session, mirror, f"/v2/pinned/tool/manifests/{image.manifest_digest}")
    (entry,) = (await get(session, mirror, "/admin/catalog"))["repositories"]
    assert entry["tags"] == 0 and entry["last_pulled"] is None  # not flushed yet
    await flush(mirror)
    detail = await get(session, mirror, "/admin/catalog/pinned/tool")
    assert detail["tag_list"] == [] and detail["last_pulled"] == stamp(clock.now)


def test_platforms_of_an_index() -> None:
    entries = [
        {"platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
        {"platform": {"os": "linux", "architecture": "amd64"}},
        {"platform": {"os": "linux", "architecture": "amd64"}},  # listed once
        {  # BuildKit's attestation: not a platform
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
        },
        {"platform": "linux/s390x"},  # not an object: skipped
        {"digest": "sha256:" + "0" * 64},  # no platform
        "junk",
    ]
    body = json.dumps({"manifests": entries}).encode()
    assert platforms_of(body) == ["linux/arm/v7", "linux/amd64"]
    for junk in (b"", b"[]", b"{", b'{"manifests": 3}', b"[" * 100_000):
        assert platforms_of(junk) == []


async def test_hostile_filters_and_cursors_are_answered_never_with_a_5xx(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> None:
    mirror = await make_mirror(admin_token=TOKEN)
    await pull_tags(hub, session, mirror, REPOS[:2])
    queries = [
        {"prefix": "\x00"},
        {"prefix": "t" * 5000},  # (aiohttp refuses a request line over 8 KiB itself)
        {"prefix": "team/\u00e9\U0001f600"},
        {"last": "\x00:\x00"},
        {"last": "docker.io:" + "z" * 5000},
        {"last": ":::"},
        {"upstream": "\x00"},
        {"upstream": "docker.io", "last": "team/a\x00"},
        {"n": "1", "last": "docker.io:team/a", "prefix": "team/"},
    ]
    for query in queries:
        async with session.get(
            mirror.make_url("/admin/catalog"), params=query, headers=AUTH
        ) as resp:
            assert resp.status < 500, (query, resp.status)
            body = await resp.json(content_type=None)
            assert "repositories" in body or body["errors"][0]["code"] == "NAME_UNKNOWN", query
    for name in ("team/a%00", "a" * 300, "team//a", "Team/A", "team/a:v1"):
        async with session.get(mirror.make_url(f"/admin/catalog/{name}"), headers=AUTH) as resp:
            assert resp.status in (400, 404), (name, resp.status)
            assert await oci_error_code(resp) in ("NAME_INVALID", "NAME_UNKNOWN"), name
