"""PartUpload against a scripted client: several parts go up at once, yet the object is
completed only with every part in order, and a part that fails leaves no upload behind.

The real bucket's side (SeaweedFS) is in test_s3_fills.py; here the client is a stand-in, so a
part can be held in flight or made to fail at a chosen moment, which a real server cannot do.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from mirror.errors import Unavailable
from mirror.stores.s3_parts import PART_SIZE, PARTS_IN_FLIGHT, PartUpload


class ScriptedClient:
    """The calls PartUpload makes; every part waits for `release` before it answers."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.fail_part: int | None = None
        self.in_flight = 0
        self.full = asyncio.Event()  # PARTS_IN_FLIGHT parts are up at once
        self.most_in_flight = 0
        self.parts: dict[int, bytes] = {}
        self.completed: list[dict[str, Any]] | None = None
        self.aborted = False

    async def create_multipart_upload(self, **_: Any) -> dict[str, Any]:
        return {"UploadId": "u1"}

    async def upload_part(self, *, PartNumber: int, Body: bytes, **_: Any) -> dict[str, Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight == PARTS_IN_FLIGHT:
            self.full.set()
        try:
            await self.release.wait()
            if PartNumber == self.fail_part:
                raise ClientError({"Error": {"Code": "InternalError"}}, "UploadPart")
            self.parts[PartNumber] = Body
            return {"ETag": f'"{PartNumber}"'}
        finally:
            self.in_flight -= 1

    async def complete_multipart_upload(self, *, MultipartUpload: Any, **_: Any) -> None:
        self.completed = MultipartUpload["Parts"]

    async def abort_multipart_upload(self, **_: Any) -> None:
        self.aborted = True


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, bytes]:
    """A file of 5 whole parts and a short tail; distinct bytes per part."""
    data = b"".join(bytes([n]) * PART_SIZE for n in range(5)) + b"tail"
    path = tmp_path / "blob"
    path.write_bytes(data)
    return path, data


def upload(client: ScriptedClient, path: Path) -> PartUpload:
    return PartUpload(cast(Any, client), "bucket", "key", path)


async def test_parts_go_up_together_and_complete_in_order(source: tuple[Path, bytes]) -> None:
    path, data = source
    client = ScriptedClient()
    parts = upload(client, path)
    # The file holds everything: PARTS_IN_FLIGHT parts start, and no more until one answers.
    sending = asyncio.create_task(parts.send_ready(len(data)))
    await client.full.wait()
    assert not sending.done(), "more parts than PARTS_IN_FLIGHT would have gone up at once"
    assert client.completed is None
    client.release.set()
    await sending
    await parts.finish(len(data))
    assert client.most_in_flight == PARTS_IN_FLIGHT
    assert client.completed is not None
    assert [p["PartNumber"] for p in client.completed] == [1, 2, 3, 4, 5, 6]
    assert b"".join(client.parts[n] for n in range(1, 7)) == data
    assert not client.aborted


async def test_a_failed_part_fails_the_finish_and_abort_leaves_nothing(
    source: tuple[Path, bytes],
) -> None:
    path, data = source
    client = ScriptedClient()
    client.fail_part = 2
    client.release.set()
    parts = upload(client, path)
    with pytest.raises(Unavailable):  # from whichever call waits for that part first
        await parts.send_ready(len(data))
        await parts.finish(len(data))
    assert client.completed is None, "an upload with a failed part was completed"
    await parts.abort()
    assert client.aborted
    assert client.in_flight == 0


async def test_abort_stops_the_parts_in_flight(source: tuple[Path, bytes]) -> None:
    """A cancelled fill: its parts still in flight are stopped before the upload is aborted,
    so none lands after the abort."""
    path, _ = source
    client = ScriptedClient()
    parts = upload(client, path)
    await parts.send_ready(PARTS_IN_FLIGHT * PART_SIZE)  # up to the limit: nothing waits
    await client.full.wait()
    await parts.abort()
    assert client.aborted and client.in_flight == 0 and client.parts == {}
    assert client.completed is None
