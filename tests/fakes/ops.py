"""Support for the operations tests: the data folder seen from outside, metrics, the CLI.

Everything here looks at the mirror from the outside, as an operator would: the files under
`data/`, the SQLite index read with the standard library, `/metrics` text, the `mirror` command
line (its `main`, with arguments, output and exit code). Nothing else of the mirror is imported.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

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


class Cli:
    """The `cli` fixture: `mirror ARGS` in-process, through `mirror.cli.main.main`.

    It runs in a worker thread: the commands that talk to a mirror (`--server`, `warm`) call
    the in-process mirror of the test, whose event loop must keep serving meanwhile. Output is
    what capsys captured; the environment is the test's, without MIRROR_ADMIN_TOKEN unless
    `env` sets it.
    """

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch

    def run(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        """Blocking: for a test with no mirror of its own running in the event loop."""
        from mirror.cli.main import main

        with self.monkeypatch.context() as patch:
            patch.delenv("MIRROR_ADMIN_TOKEN", raising=False)
            for key, value in (env or {}).items():
                patch.setenv(key, value)
            self.capsys.readouterr()
            code = main(list(args))
            out, err = self.capsys.readouterr()
        return CliResult(code, out, err)

    async def __call__(self, *args: str, env: Mapping[str, str] | None = None) -> CliResult:
        return await asyncio.wait_for(asyncio.to_thread(self.run, *args, env=env), CLI_TIMEOUT)
