"""Support for the operations tests: the data folder seen from outside, metrics, subprocesses.

Everything here looks at the mirror from the outside, as an operator would: the files under
`data/`, the SQLite index read with the standard library, `/metrics` text, the `mirror` command
run as a real process. Nothing imports the mirror's internals.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from fakes.client import MakeMirror

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 10.0
START_TIMEOUT = 20.0
CLI_TIMEOUT = 60.0

T = TypeVar("T")


# The operations tests use the same factory; the name says which keys they rely on.
MakeOpsMirror = MakeMirror


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


# -- waiting --------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], Awaitable[T | None]], *, within: float = 10.0, what: str = "condition"
) -> T:
    """Poll an async check until it returns something other than None; bounded."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {within}s")
        await asyncio.sleep(0.05)


async def settle(condition: Callable[[], bool], *, within: float = 10.0, what: str = "") -> None:
    """Poll a synchronous condition (files, rows) without blocking the event loop for long."""

    async def check() -> bool | None:
        return True if condition() else None

    await eventually(check, within=within, what=what or "condition")


# -- processes ------------------------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_binary(name: str) -> str:
    """The binary's path; a missing one skips the test, or fails it with CI=true."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        message = f"{name} is not installed (Debian package: {name})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MIRROR_ADMIN_TOKEN"}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


async def stop_process(proc: asyncio.subprocess.Process, grace: float = STOP_TIMEOUT) -> int:
    """SIGTERM, wait (bounded), then SIGKILL; the exit code."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await asyncio.wait_for(proc.wait(), grace)
    assert proc.returncode is not None
    return proc.returncode


@dataclass(frozen=True, slots=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        value = json.loads(self.stdout)
        assert isinstance(value, dict), self.stdout
        return value


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


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the plain values used here
    raise TypeError(f"no TOML for {value!r}")


def toml_text(document: Mapping[str, Any]) -> str:
    """TOML for the mirror's shape of config: tables of scalars and `[[upstreams]]`."""
    lines: list[str] = []
    for section, body in document.items():
        tables: Sequence[Mapping[str, Any]]
        if isinstance(body, list):
            tables, header = body, f"[[{section}]]"
        else:
            tables, header = [body], f"[{section}]"
        for table in tables:
            lines.append(header)
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
    return "\n".join(lines) + "\n"


class MirrorProcess:
    """`python -m mirror serve --config FILE` with stdout and stderr in files of their own."""

    def __init__(self, root: Path, config: Mapping[str, Any], *extra_args: str) -> None:
        self.root = root
        self.port = free_port()
        self.config = {**config, "server": {**config.get("server", {}), "listen": self.listen}}
        self.config_path = root / "mirror.toml"
        self.stdout_path = root / "mirror.stdout"
        self.stderr_path = root / "mirror.stderr"
        self.extra_args = extra_args
        self._proc: asyncio.subprocess.Process | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def listen(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.listen}"

    async def start(self, session: aiohttp.ClientSession) -> None:
        self.config_path.write_text(toml_text(self.config))
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mirror",
                "serve",
                "--config",
                str(self.config_path),
                *self.extra_args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=subprocess_env(),
                cwd=self.root,
            )
        proc = self._proc

        async def ready() -> bool | None:
            if proc.returncode is not None:
                raise AssertionError(f"mirror exited {proc.returncode}:\n{self.output()}")
            try:
                async with session.get(f"{self.url}/healthz") as resp:
                    return True if resp.status == 200 else None
            except aiohttp.ClientError:
                return None

        await eventually(ready, within=START_TIMEOUT, what=f"mirror on {self.listen}")

    async def stop(self) -> int | None:
        if self._proc is None:
            return None
        proc, self._proc = self._proc, None
        return await stop_process(proc)

    def output(self) -> str:
        parts = [p.read_text(errors="replace") for p in (self.stdout_path, self.stderr_path)]
        return "".join(part for part in parts)

    def stderr_lines(self) -> list[str]:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return [line for line in text.splitlines() if line.strip()]
