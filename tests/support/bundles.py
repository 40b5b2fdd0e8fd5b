"""The air-gap commands as an operator runs them: `python -m mirror lock|export|import|verify`.

Also what the bundle tests look at from outside: the cache's rows and files (to prove a refused
bundle changed nothing), and a tar's members (to damage one on purpose).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import subprocess_env

CLI_TIMEOUT = 100.0


@dataclass(frozen=True, slots=True)
class Run:
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def mirror_cli(*args: str, token: str | None = None, cwd: Path | None = None) -> Run:
    """`mirror ARGS` as a process; the admin token, when given, through the environment."""
    extra = {"MIRROR_ADMIN_TOKEN": token} if token else None
    proc = subprocess.run(
        [sys.executable, "-m", "mirror", *args],
        capture_output=True,
        env=subprocess_env(extra),
        cwd=cwd,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    return Run(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def cache_state(data: Path) -> dict[str, Any]:
    """Every row of the index's content tables and every blob file with its size."""
    db = sqlite3.connect(data / "mirror.db", timeout=10)
    try:
        rows = {
            table: sorted(
                tuple(str(value) for value in row) for row in db.execute(f"SELECT * FROM {table}")
            )
            for table in ("tags", "manifests", "blobs", "links", "refs")
        }
    finally:
        db.close()
    files = {
        str(path.relative_to(data)): path.stat().st_size
        for path in (data / "blobs").glob("*/*/*")
        if path.is_file()
    }
    temps = sorted(p.name for p in (data / "tmp").iterdir()) if (data / "tmp").exists() else []
    return {"rows": rows, "files": files, "temps": temps}


def member_offsets(bundle: Path) -> dict[str, tuple[int, int]]:
    """Each member of a tar: (where its data starts, its size)."""
    with tarfile.open(bundle) as tar:
        return {m.name: (m.offset_data, m.size) for m in tar.getmembers() if m.isfile()}


def largest_blob(bundle: Path) -> tuple[str, int, int]:
    """(digest, data offset, size) of the bundle's largest blob."""
    name, (offset, size) = max(
        ((n, v) for n, v in member_offsets(bundle).items() if n.startswith("blobs/")),
        key=lambda item: item[1][1],
    )
    return "sha256:" + name.rsplit("/", 1)[1], offset, size
