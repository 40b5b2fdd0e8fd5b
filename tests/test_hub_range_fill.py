"""A Range request that joins a running fill never holds a complete 206 of unverified bytes."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub

REPO = "library/alpine"
MIB = 1024 * 1024


async def test_range_inside_a_failing_fill_is_cut_short(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(MIB, seed=41)
    digest = hub.add_blob(REPO, data)
    # The upstream sends wrong bytes: the first half at once, the rest once the gate opens.
    hub.faults.blob_wrong_bytes = True
    hub.faults.blob_gate = gate = asyncio.Event()
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    async with session.get(url, headers={"Range": "bytes=0-999"}) as resp:
        assert resp.status == 206
        assert resp.headers["Content-Length"] == "1000"
        # All but the range's last byte may arrive while the blob is unverified ...
        head = await asyncio.wait_for(resp.content.readexactly(999), 10)
        assert len(head) == 999
        gate.set()
        # ... and the last one only after verification, which fails here: the client is cut.
        try:
            rest = await asyncio.wait_for(resp.content.read(), 10)
        except aiohttp.ClientPayloadError:
            rest = None
    assert rest is None or len(rest) == 0, "a complete 206 of unverified bytes was sent"
