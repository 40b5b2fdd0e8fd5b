"""A purge or a failed verify takes effect for new requests at once, while a client that is
being sent the old file finishes; verify checks blobs that are being read, too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.ops import assert_consistent, blob_path, flip_bytes

TOKEN = "purge-effects-token-0123456789"
REPO = "library/alpine"
MIB = 1024 * 1024


async def admin(session: aiohttp.ClientSession, mirror: TestServer, method: str, path: str) -> Any:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.request(method, mirror.make_url(path), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_a_purged_blob_is_not_served_to_new_clients_while_one_still_reads_it(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = hub.make_blob(24 * MIB + 5, seed=71)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror(admin_token=TOKEN)
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    async with session.get(url) as resp:
        assert await resp.read() == data
    async with aiohttp.ClientSession() as reader, reader.get(url) as held:
        head = await held.content.readexactly(64 * 1024)  # then stop reading for a while
        await admin(session, mirror, "DELETE", f"/admin/blobs/{digest}")
        assert blob_path(tmp_path / "data", digest).exists()  # still being sent
        hub.reset_counts()
        async with session.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["X-Cache"] == "miss", "served from a purged file"
            assert await resp.read() == data
        assert hub.count(server="cdn", method="GET") == 1
        rest = await held.read()
    assert head + rest == data
    state = assert_consistent(tmp_path / "data")
    assert state.rows == {digest: len(data)}  # the new copy, not the purged one


async def test_verify_checks_a_blob_that_is_being_read(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = hub.make_blob(24 * MIB + 7, seed=72)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror(admin_token=TOKEN)
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    async with session.get(url) as resp:
        assert await resp.read() == data
    stored = blob_path(tmp_path / "data", digest)
    async with aiohttp.ClientSession() as reader, reader.get(url) as held:
        await held.content.readexactly(64 * 1024)  # holds the blob: it is in use
        flip_bytes(stored, offset=20 * MIB)  # bit rot past what the reader was sent
        report = await admin(session, mirror, "POST", "/admin/verify")
        assert report["corrupt"] == [digest], report
        hub.reset_counts()
        async with session.get(url) as resp:
            assert resp.headers["X-Cache"] == "miss"
            assert await resp.read() == data
        assert hub.count(server="cdn", method="GET") == 1
    assert assert_consistent(tmp_path / "data").rows == {digest: len(data)}
