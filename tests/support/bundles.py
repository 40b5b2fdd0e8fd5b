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

from .mirror_process import MirrorProcess, MirrorProcesses, process_config
from .procs import free_port, subprocess_env
from .skopeo import Skopeo

CLI_TIMEOUT = 100.0
TOKEN = "bundle-test-token"  # the inside mirror's admin token


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


def inside_mirror(processes: MirrorProcesses, root: Path) -> MirrorProcess:
    """A mirror that cannot reach anything: offline, its upstream a port nobody listens on."""
    config = process_config(f"http://127.0.0.1:{free_port()}", root / "inside-data")
    config["upstreams"][0]["offline"] = True
    config["admin"] = {"token": TOKEN}
    return processes(config=config)


def pull(skopeo: Skopeo, source: str, dest: Path, arch: str | None) -> Path:
    """skopeo copy SOURCE dir:DEST, every platform (arch None) or one."""
    global_args = ["--override-arch", arch, "--override-os", "linux"] if arch else []
    args = ["--quiet", "--src-tls-verify=false", f"--tmpdir={skopeo.tmpdir}"]
    if source.startswith("docker://"):
        args.append("--src-no-creds")
    if arch is None:
        args.append("--all")
    skopeo.run(*global_args, "copy", *args, source, f"dir:{dest}")
    return dest


def lock_and_export(server: str, images_txt: str, root: Path) -> tuple[Path, Path]:
    """images.txt locked and exported through the mirror at `server`: (lock, bundle.tar)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "images.txt").write_text(images_txt)
    lock = root / "images.lock"
    run = mirror_cli("lock", str(root / "images.txt"), "-o", str(lock), "--server", server)
    assert run.returncode == 0, run.stderr
    tar = root / "bundle.tar"
    run = mirror_cli("export", "--lock", str(lock), "-o", str(tar), "--server", server)
    assert run.returncode == 0, run.stderr
    return lock, tar
