"""Upstream lies during fills: no client may hold a complete body of wrong bytes; a stop mid-fill
leaves no temp file and no stray write."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import MakeMirror
from support.poll import eventually

from mirror.web.appkeys import MIRROR

REPO = "library/alpine"
SIZE = 3 * 1024 * 1024 + 17


async def fetch(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[int, bytes | None, dict[str, str]]:
    try:
        async with session.get(url, headers=headers) as resp:
            return resp.status, await resp.read(), dict(resp.headers)
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
        return -1, None, {}


@pytest.mark.server_errors_expected
@pytest.mark.parametrize(
    "fault", ["wrong", "short", "wrong-chunked", "short-chunked", "trickle-wrong"]
)
@pytest.mark.parametrize("ranged", [False, True])
async def test_no_client_gets_a_complete_body_of_wrong_bytes(
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    fault: str,
    ranged: bool,
    tmp_path: Path,
) -> None:
    data = hub.make_blob(SIZE, seed=7)
    digest = hub.add_blob(REPO, data)
    hold = asyncio.Event()
    if "wrong" in fault:
        hub.faults.blob_wrong_bytes = True
    if "short" in fault:
        hub.faults.blob_reset_after = SIZE - 5
    if "chunked" in fault:
        hub.faults.blob_hold_end = hold
    if "trickle" in fault:
        hub.faults.blob_chunk_delay = 0.01
    mirror = await make_mirror(storage_path=tmp_path / "data")
    url = str(mirror.make_url(f"/v2/{REPO}/blobs/{digest}"))
    headers = (
        [{"Range": "bytes=0-99"}, {"Range": f"bytes=100-{SIZE - 1}"}, {"Range": "bytes=-10"}, {}]
        if ranged
        else [{}]
    )
    tasks = []
    for n in range(6):
        tasks.append(asyncio.create_task(fetch(session, url, headers[n % len(headers)])))
        await asyncio.sleep(0.02)  # clients join the fill at different points of it
    hold.set()
    results = await asyncio.gather(*tasks)
    for (status, body, resp_headers), asked in zip(
        results, [headers[n % len(headers)] for n in range(6)], strict=True
    ):
        if status not in (200, 206) or body is None:
            continue
        if status == 200:
            assert hashlib.sha256(body).hexdigest() == digest.split(":")[1], (
                fault,
                asked,
                len(body),
            )
        else:
            first, last = resp_headers["Content-Range"].split()[1].split("/")[0].split("-")
            assert body == data[int(first) : int(last) + 1], (fault, asked, resp_headers)
    # Nothing left behind, once the failed fills have cleaned up after themselves.
    temp = tmp_path / "data" / "tmp"
    await eventually(lambda: not temp.exists() or not any(temp.iterdir()), what="no temp file left")


async def test_stopping_with_many_fills_running_leaves_no_temp_file_and_no_stray_write(
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blobs = [hub.make_blob(8 * 1024 * 1024, seed=50 + n) for n in range(12)]
    digests = [hub.add_blob(REPO, b) for b in blobs]
    hub.faults.blob_gate = asyncio.Event()  # second halves never come
    mirror = await make_mirror(storage_path=tmp_path / "data")
    service = mirror.app[MIRROR].blobs
    tasks = [
        asyncio.create_task(fetch(session, str(mirror.make_url(f"/v2/{REPO}/blobs/{d}")), {}))
        for d in digests
    ]
    await eventually(
        lambda: (
            len(service._fills) == len(digests)
            and all(f.written > 0 for f in service._fills.values())
        ),
        what="every fill under way",
    )
    await mirror.close()
    results = await asyncio.gather(*tasks)
    assert all(body is None or status != 200 for status, body, _ in results)
    tmp = tmp_path / "data" / "tmp"
    assert list(tmp.iterdir()) == []
    await asyncio.sleep(0.5)
    assert not [r for r in caplog.records if "Bad file descriptor" in r.getMessage() or r.exc_info]
    hub.faults.blob_gate.set()
