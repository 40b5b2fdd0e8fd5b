"""One owner per data folder: a second `mirror serve`, and the offline commands (`--data`), on
a folder a running mirror holds exit 2 with one line naming its PID, and leave its data alone:
the fill in progress completes and its temp file is not swept."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
from fakes import FakeHub
from fakes.ops import Cli, assert_consistent
from support.mirror_process import MirrorProcesses, process_config, serve_expecting_exit
from support.poll import eventually
from support.procs import free_port

REPO = "library/alpine"


def temp_files(tmp: Path) -> dict[str, int] | None:
    """The fill's temp files (name → size), once one holds bytes."""
    temps = {p.name: p.stat().st_size for p in tmp.iterdir()} if tmp.exists() else {}
    return temps if any(temps.values()) else None


async def test_a_live_folder_refuses_a_second_server_and_the_offline_commands(
    hub: FakeHub,
    session: aiohttp.ClientSession,
    mirror_processes: MirrorProcesses,
    cli: Cli,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    layer = hub.make_blob(1_000_000, seed=31)
    digest = hub.add_blob(REPO, layer)
    config = process_config(hub.url, data)
    # Started in a worker thread: the fake hub runs in this event loop and must keep serving.
    proc = await asyncio.to_thread(mirror_processes, config=config)

    # A fill in progress: half the blob is in tmp/, the rest waits behind the gate.
    gate = hub.faults.blob_gate = asyncio.Event()

    async def fetch() -> tuple[int, bytes]:
        async with session.get(f"{proc.url}/v2/{REPO}/blobs/{digest}") as resp:
            return resp.status, await resp.read()

    download = asyncio.create_task(fetch())
    temps = await eventually(lambda: temp_files(data / "tmp"), what="a temp file with bytes")

    held = (
        f"cannot use data folder {data} (%s): in use by another mirror process "
        f"(pid {proc.pid}, lock {data / 'lock'})"
    )
    # A second server on the same folder (another port): refused before it listens.
    second_config = {**config, "server": {"listen": f"127.0.0.1:{free_port()}"}}
    second = await asyncio.to_thread(serve_expecting_exit, tmp_path / "second", second_config)
    assert second.returncode == 2, second
    assert second.stderr_lines == ["mirror: " + held % "storage.path"], second
    assert second.stdout == "" and "Traceback" not in second.stderr

    # Every offline command on the live folder: refused, one line, nothing touched.
    for command in (["gc"], ["stats"], ["verify"], ["purge", "--all"]):
        result = await cli(*command, "--data", str(data))
        assert result.returncode == 2, (command, result)
        line = f"mirror {command[0]}: " + held % "--data" + "; stop it, or use --server"
        assert result.stderr.splitlines() == [line], (command, result)
        assert result.stdout == "", (command, result)

    # Nobody swept the running fill's temp file; it completes and is stored.
    now = {p.name for p in (data / "tmp").iterdir()}
    assert set(temps) <= now, f"temp files swept: {sorted(set(temps) - now)}"
    gate.set()
    status, body = await download
    assert status == 200 and body == layer
    assert await asyncio.to_thread(proc.stop) == 0
    state = assert_consistent(data)
    assert state.rows == {digest: len(layer)}

    # Stopped, the folder is free again: the offline commands work on it.
    stats = await cli("stats", "--data", str(data))
    assert stats.returncode == 0, stats
    assert json.loads(stats.stdout)["storage"] == {"bytes": len(layer), "blobs": 1}


async def test_the_lock_names_its_holder_is_let_go_at_stop_and_taken_again(
    hub: FakeHub, mirror_processes: MirrorProcesses, cli: Cli, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = process_config(hub.url, data)
    proc = await asyncio.to_thread(mirror_processes, config=config)
    assert (data / "lock").read_text().strip() == str(proc.pid)
    assert await asyncio.to_thread(proc.stop) == 0
    assert (data / "lock").read_text() == ""  # let go: no PID left behind

    await asyncio.to_thread(proc.start)  # the same folder, once more
    again = await cli("stats", "--data", str(data))
    assert again.returncode == 2, again
    assert f"(pid {proc.pid}, lock {data / 'lock'})" in again.stderr
