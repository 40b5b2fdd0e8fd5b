"""A tag's freshness is its resolution time plus the tag TTL in force now, not an expiry
written when it was resolved: a mirror restarted with another `tag_ttl` applies it to the tags
it already knows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub, FakeImage
from fakes.client import MakeMirror

REPO = "library/alpine"
MANIFESTS = "/manifests/"


async def get_tag(session: aiohttp.ClientSession, mirror: TestServer, image: FakeImage) -> str:
    """Pull the tag and check what it resolved to; its X-Cache header (hit, miss, stale)."""
    async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/{image.tag}")) as resp:
        assert resp.status == 200
        assert await resp.read() == image.manifest_bytes
        return resp.headers["X-Cache"]


@pytest.mark.parametrize(
    ("restart_ttl", "advance", "revalidated"),
    [
        ("1m", 120.0, True),  # shorter: the 10m the tag was resolved under no longer holds
        ("1h", 120.0, False),
        ("1h", 1800.0, False),  # longer: past the old 10m, within the new hour
        ("10m", 1800.0, True),  # unchanged, as before
    ],
)
async def test_restart_applies_the_new_tag_ttl_to_known_tags(
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    tmp_path: Path,
    restart_ttl: str,
    advance: float,
    revalidated: bool,
) -> None:
    image = hub.add_image(REPO, "3.19", [b"layer"])
    data = tmp_path / "shared-data"
    first = await make_mirror(storage_path=data, tag_ttl="10m")
    resolved_at = clock.now
    assert await get_tag(session, first, image) == "miss"
    await first.close()

    restarted = await make_mirror(storage_path=data, tag_ttl=restart_ttl)
    hub.reset_counts()
    clock.advance(advance)
    answer = await get_tag(session, restarted, image)
    heads = hub.count(server="registry", method="HEAD", path_contains=MANIFESTS, status=200)
    if revalidated:
        assert answer == "miss"
        assert heads == 1  # revalidated with one HEAD, nothing else fetched
        assert hub.count(server="registry", method="GET", path_contains=MANIFESTS) == 0
    else:
        assert answer == "hit"
        assert hub.count() == 0
    # And from the read cache of the running mirror, the same answer.
    hub.reset_counts()
    assert await get_tag(session, restarted, image) == "hit"
    assert hub.count() == 0
    db = sqlite3.connect(data / "mirror.db")
    try:
        ((fetched_at,),) = db.execute("SELECT fetched_at FROM tags").fetchall()
    finally:
        db.close()
    assert fetched_at == (clock.now if revalidated else resolved_at)


async def test_revalidation_restarts_the_ttl_from_now(
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    clock: FakeClock,
) -> None:
    image = hub.add_image(REPO, "3.19", [b"layer"])
    mirror = await make_mirror(tag_ttl="1m")
    assert await get_tag(session, mirror, image) == "miss"
    clock.advance(59)
    assert await get_tag(session, mirror, image) == "hit"
    clock.advance(2)
    assert await get_tag(session, mirror, image) == "miss"  # revalidated at 61 s
    hub.reset_counts()
    clock.advance(59)
    assert await get_tag(session, mirror, image) == "hit"
    assert hub.count() == 0
    clock.advance(1)
    assert await get_tag(session, mirror, image) == "miss"
