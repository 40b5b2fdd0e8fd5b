"""Support for the operations tests: the data folder seen from outside, metrics, subprocesses.

Everything here looks at the mirror from the outside, as an operator would: the files under
`data/`, the SQLite index read with the standard library, `/metrics` text, the `mirror` command
run as a real process. Nothing imports the mirror's internals.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families
from support.procs import REPO_ROOT, stop_process, subprocess_env

CLI_TIMEOUT = 60.0


# -- the data folder ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreState:
    """What the data folder holds: blob rows (digest → size), blob files, temp files."""

    rows: dict[str, int]
    files: dict[str, int]
    temps: list[str]
    manifests: int
    tags: int

    @property
    def file_bytes(self) -> int:
        return sum(self.files.values())


def blob_path(data: Path, digest: str) -> Path:
    algorithm, _, hex_digest = digest.partition(":")
    return data / "blobs" / algorithm / hex_digest[:2] / hex_digest


def read_store(data: Path) -> StoreState:
    """Read the index and the files directly (fine while the mirror runs: SQLite is in WAL)."""
    files: dict[str, int] = {}
    blobs = data / "blobs"
    if blobs.exists():
        for path in blobs.glob("*/*/*"):
            if path.is_file():
                files[f"{path.parent.parent.name}:{path.name}"] = path.stat().st_size
    tmp = data / "tmp"
    temps = sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []
    db = sqlite3.connect(data / "mirror.db", timeout=10)
    try:
        rows = {str(d): int(s) for d, s in db.execute("SELECT digest, size FROM blobs")}
        manifests = int(db.execute("SELECT count(*) FROM manifests").fetchone()[0])
        tags = int(db.execute("SELECT count(*) FROM tags").fetchone()[0])
    finally:
        db.close()
    return StoreState(rows=rows, files=files, temps=temps, manifests=manifests, tags=tags)


def assert_consistent(data: Path) -> StoreState:
    """Every blob row has its file (of the row's size), every file a row, no temp file left."""
    state = read_store(data)
    assert set(state.rows) == set(state.files), (
        f"rows without file: {sorted(set(state.rows) - set(state.files))}; "
        f"files without row: {sorted(set(state.files) - set(state.rows))}"
    )
    for digest, size in state.rows.items():
        assert state.files[digest] == size, f"{digest}: row says {size}, file has {state.files}"
    assert state.temps == [], f"temp files left: {state.temps}"
    return state


def flip_bytes(path: Path, offset: int = 0, count: int = 16) -> None:
    """Corrupt a stored file in place (same length, different bytes): bit rot on disk."""
    with path.open("r+b") as file:
        file.seek(offset)
        original = file.read(count)
        file.seek(offset)
        file.write(bytes(b ^ 0xFF for b in original))


# -- metrics --------------------------------------------------------------------------------


def metric_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float | None:
    """The value of one sample in Prometheus text format (None when absent)."""
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in wanted.items()):
                return float(sample.value)
    return None


async def scrape(session: aiohttp.ClientSession, server: TestServer | str) -> str:
    url = f"{server}/metrics" if isinstance(server, str) else str(server.make_url("/metrics"))
    async with session.get(url) as resp:
        assert resp.status == 200, resp.status
        return await resp.text()


# -- the command line -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def run_cli(*args: str, env: Mapping[str, str] | None = None) -> CliResult:
    """`python -m mirror ARGS` as a real process; the event loop keeps serving meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mirror",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=subprocess_env(env),
        cwd=REPO_ROOT,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        await stop_process(proc)
        raise AssertionError(f"mirror {' '.join(args)} did not finish in {CLI_TIMEOUT}s") from None
    assert proc.returncode is not None
    return CliResult(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))
