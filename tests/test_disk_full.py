"""A full disk is a state, not a crash: hits go on, new content is not stored (and never half
stored), the operator can free space through the admin API, and the mirror says it is full."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import MakeMirror, pull, read_or_none
from fakes.oci import ALL_MANIFEST_TYPES
from fakes.ops import assert_consistent, metric_value, scrape
from support.procs import in_ci

REPO = "library/full"
MIB = 1024 * 1024
DISK = 24 * MIB
TOKEN = "disk-full-admin-token-0123456789"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 24 MiB: a real ENOSPC, from the kernel, for this test only."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("mounting a tmpfs needs root")
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill_up(path: Path) -> None:
    """Write a filler file until the filesystem refuses: no byte left for anyone. Unbuffered
    (a buffered file's close would retry the bytes the disk refused and raise), in ever smaller
    pieces down to one byte, so the last partial block is taken too."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for size in (64 * 1024, 4096, 1):
            chunk = bytes(size)
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    assert os.statvfs(path.parent).f_bavail == 0


async def metric(session: aiohttp.ClientSession, mirror: object, name: str, **labels: str) -> float:
    from aiohttp.test_utils import TestServer

    assert isinstance(mirror, TestServer)
    return metric_value(await scrape(session, mirror), name, labels) or 0.0


async def test_full_disk_serves_hits_stores_nothing_half_and_frees_through_the_api(
    # small_disk first: it is unmounted only after the mirror has stopped.
    small_disk: Path,
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    data = small_disk / "data"
    cached = hub.add_image(REPO, "cached", [hub.make_blob(MIB, seed=61)])
    new = hub.add_image(REPO, "new", [hub.make_blob(2 * MIB, seed=62)])
    mirror = await make_mirror(storage_path=data, admin_token=TOKEN)
    await pull(session, mirror, cached)
    assert await metric(session, mirror, "mirror_storage_full") == 0

    fill_up(small_disk / "filler")

    # A new blob cannot be stored: its client is told or cut short, nothing is left behind.
    async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{new.layer_digests[0]}")) as resp:
        body = await read_or_none(resp) if resp.status == 200 else None
        assert resp.status in (200, 503)
    assert body is None, "a blob that could not be stored was served whole"
    state = assert_consistent(data)  # no file without its row, no temp file
    assert new.layer_digests[0] not in state.files
    assert await metric(session, mirror, "mirror_storage_full") == 1
    assert await metric(session, mirror, "mirror_fill_failures_total", reason="disk") >= 1
    async with session.get(mirror.make_url("/readyz")) as resp:
        assert resp.status == 200  # hits still work: do not take the mirror out of service
        assert (await resp.json())["status"] == "degraded"

    # What is cached is still served, byte for byte.
    await pull(session, mirror, cached)
    # A manifest verified now is served even if it cannot be written down.
    url = mirror.make_url(f"/v2/{REPO}/manifests/new")
    async with session.get(url, headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}) as resp:
        assert resp.status == 200
        assert await resp.read() == new.manifest_bytes

    # The operator frees space through the admin API, on the full disk.
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.delete(mirror.make_url("/admin/cache"), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["blobs"] >= 2
    assert assert_consistent(data).files == {}
    assert os.statvfs(small_disk).f_bavail > 0

    # With room again, the new image is stored and the mirror says so.
    (small_disk / "filler").unlink()
    await pull(session, mirror, new)
    assert new.layer_digests[0] in assert_consistent(data).files
    assert await metric(session, mirror, "mirror_storage_full") == 0


def test_no_space_errors_are_recognised() -> None:
    from mirror.stores.disk_space import is_no_space

    assert is_no_space(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_no_space(OSError(errno.EACCES, "Permission denied"))
