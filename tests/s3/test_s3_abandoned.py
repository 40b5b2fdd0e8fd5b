"""A replica killed in the middle of a fill leaves a multipart upload in the bucket and no
object; the janitor of a replica that starts afterwards aborts the upload once it is older
than `abandoned_after`, and no half-written object ever becomes visible."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import aiohttp
import pytest
from fakes import FakeHub
from support.mirror_process import MirrorProcesses, process_config
from support.poll import eventually, wait_until
from support.s3server import S3Server

REPO = "library/s3"
MIB = 1024 * 1024


# The fake hub is writing to the killed replica's connection when it dies: that error is the
# point of the test, not a fault of the hub.
@pytest.mark.server_errors_expected
async def test_a_replica_killed_mid_fill_leaves_no_object_and_its_upload_is_aborted(
    hub: FakeHub,
    seaweedfs: S3Server,
    mirror_processes: MirrorProcesses,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    bucket = f"abandoned-{uuid.uuid4().hex[:12]}"
    seaweedfs.create_bucket(bucket)
    digest = hub.add_blob(REPO, hub.make_blob(24 * MIB, seed=77))  # 8 MiB parts: multipart
    config = process_config(hub.url, tmp_path / "replica" / "data")
    config["storage"].update(backend="s3", flush_interval="1s")
    config["storage.s3"] = {
        "endpoint": seaweedfs.endpoint,
        "bucket": bucket,
        "access_key": seaweedfs.access_key,
        "secret_key": seaweedfs.secret_key,
        "abandoned_after": "1s",
    }
    # Started in a worker thread: the fake hub runs in this event loop and must keep serving.
    mirror = await asyncio.to_thread(mirror_processes, config=config)
    gate = hub.faults.blob_gate = asyncio.Event()  # the upstream holds the blob's second half

    async with session.get(f"{mirror.url}/v2/{REPO}/blobs/{digest}") as resp:
        assert resp.status == 200
        await resp.content.readexactly(MIB)
        await eventually(
            lambda: asyncio.to_thread(lambda: bool(seaweedfs.uploads(bucket))),
            what="a multipart upload under way",
        )
        mirror.send_signal(signal.SIGKILL)
        await asyncio.to_thread(wait_until, lambda: not mirror.running, within=10, what="dead")
    gate.set()
    assert await asyncio.to_thread(seaweedfs.uploads, bucket), "the killed fill's upload"
    assert await asyncio.to_thread(seaweedfs.objects, bucket) == {}

    await asyncio.to_thread(mirror.start)  # the same folder and bucket, a new process
    await eventually(
        lambda: asyncio.to_thread(lambda: seaweedfs.uploads(bucket) == []),
        within=20,
        what="the abandoned upload aborted by the janitor",
    )
    assert await asyncio.to_thread(seaweedfs.objects, bucket) == {}
    assert any("abandoned by a stopped replica" in line for line in mirror.stderr_lines())
