"""`redirect = true` against a real bucket when another replica deletes the object: with the
memo off (the default) a client is never sent to the missing object; with `redirect_memo` on,
it is, within the window, exactly as the docs say; a delete through the replica itself is never
redirected to, memo or not. (The window's end, on a moved clock: test_s3_seen.py.)"""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import MakeMirror
from support.seaweedfs import SeaweedFS
from yarl import URL

from mirror.web.appkeys import MIRROR

REPO = "library/memo"
TOKEN = "memo-admin-token"


@pytest.fixture
def bucket(seaweedfs: SeaweedFS, mirror_config: dict[str, Any]) -> str:
    name = f"memo-{uuid.uuid4().hex[:12]}"
    seaweedfs.create_bucket(name)
    mirror_config["storage"]["backend"] = "s3"
    mirror_config["storage"]["s3"] = {
        "endpoint": seaweedfs.endpoint,
        "bucket": name,
        "access_key": seaweedfs.access_key,
        "secret_key": seaweedfs.secret_key,
        "redirect": True,
    }
    return name


def key(digest: str) -> str:
    return f"blobs/sha256/{digest.split(':', 1)[1]}"


async def redirected(session: aiohttp.ClientSession, url: URL) -> tuple[int, str | None]:
    """The mirror's own answer (not followed): status and Location."""
    async with session.get(url, allow_redirects=False) as resp:
        await resp.read()
        return resp.status, resp.headers.get("Location")


async def bucket_status(session: aiohttp.ClientSession, location: str) -> int:
    async with session.get(location) as resp:
        await resp.read()
        return resp.status


@pytest.mark.parametrize("memo", [None, "30s"], ids=["memo-off", "memo-30s"])
async def test_object_deleted_by_another_replica(
    memo: str | None,
    hub: FakeHub,
    seaweedfs: SeaweedFS,
    bucket: str,
    mirror_config: dict[str, Any],
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    if memo is not None:
        mirror_config["storage"]["s3"]["redirect_memo"] = memo
    data = FakeHub.make_blob(1024 * 1024, seed=5)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror()
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    async with session.get(url) as resp:  # the fill: stored in the bucket
        assert await resp.read() == data
    await mirror.app[MIRROR].blobs.uploads_settled()  # completed behind the client
    status, location = await redirected(session, url)  # a HEAD found it: remembered
    assert status == 307 and location is not None
    # Another replica's purge, as the bucket sees it: the object is deleted.
    seaweedfs.client().delete_object(Bucket=bucket, Key=key(digest))
    status, location = await redirected(session, url)
    if memo is None:
        # Asked the bucket, found it missing: a miss, fetched again, never a redirect to it.
        assert status == 200
        assert hub.count("cdn", "GET") == 2
        await mirror.app[MIRROR].blobs.uploads_settled()
        assert seaweedfs.objects(bucket, "blobs/") == {key(digest): len(data)}
    else:
        # The documented window: still redirected, and the bucket answers 404.
        assert status == 307 and location is not None
        assert await bucket_status(session, location) == 404
        assert hub.count("cdn", "GET") == 1


async def test_a_purge_through_the_replica_itself_is_never_redirected_to(
    hub: FakeHub,
    seaweedfs: SeaweedFS,
    bucket: str,
    mirror_config: dict[str, Any],
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    mirror_config["storage"]["s3"]["redirect_memo"] = "30s"
    data = FakeHub.make_blob(1024 * 1024, seed=6)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror(admin_token=TOKEN)
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    async with session.get(url) as resp:
        assert await resp.read() == data
    await mirror.app[MIRROR].blobs.uploads_settled()  # completed behind the client
    status, location = await redirected(session, url)
    assert status == 307 and location is not None
    purge = mirror.make_url(f"/admin/blobs/{digest}")
    async with session.delete(purge, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 200, await resp.text()
    status, location = await redirected(session, url)
    # A miss: fetched again (and stored again); a redirect now points at an object that is there.
    assert status == 200
    assert hub.count("cdn", "GET") == 2
    await mirror.app[MIRROR].blobs.uploads_settled()
    status, location = await redirected(session, url)
    assert status == 307 and location is not None
    assert await bucket_status(session, location) == 200
