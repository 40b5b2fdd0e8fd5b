"""Upstream blob answers that lie about their content: the client gets an OCI error, never a 500."""

from __future__ import annotations

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import oci_error_code, read_or_none
from fakes.ops import metric_value, scrape

REPO = "library/alpine"


async def test_an_empty_200_for_a_blob_is_unavailable_not_a_crash(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(100_000, seed=51)
    digest = hub.add_blob(REPO, data)
    hub.faults.blob_empty = True
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    for _ in range(3):
        async with session.get(url) as resp:
            assert resp.status == 503
            assert await oci_error_code(resp) == "UNAVAILABLE"
    hub.faults.blob_empty = False
    async with session.get(url) as resp:
        assert resp.status == 200
        assert await resp.read() == data


async def fill_failures(session: aiohttp.ClientSession, mirror: TestServer, reason: str) -> float:
    text = await scrape(session, mirror)
    return metric_value(text, "mirror_fill_failures_total", {"reason": reason}) or 0.0


async def test_failed_fills_are_counted_by_reason_and_cut_clients_counted(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    truncated = hub.add_blob(REPO, hub.make_blob(300_000, seed=52))
    wrong = hub.add_blob(REPO, hub.make_blob(300_000, seed=53))
    for reason in ("truncated", "mismatch", "disk"):
        assert await fill_failures(session, mirror, reason) == 0  # present before any failure
    hub.faults.blob_reset_after = 100_000
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{truncated}")) as resp:
        assert resp.status == 200
        assert await read_or_none(resp) is None  # cut short
    hub.faults.blob_reset_after = None
    hub.faults.blob_wrong_bytes = True
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{wrong}")) as resp:
        assert resp.status == 200
        assert await read_or_none(resp) is None
    assert await fill_failures(session, mirror, "truncated") == 1
    assert await fill_failures(session, mirror, "mismatch") == 1
    text = await scrape(session, mirror)
    assert metric_value(text, "mirror_clients_cut_total") == 2
