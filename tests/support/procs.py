"""Process plumbing every suite shares: binaries, free ports, environments, stopping, HTTP probes.

A missing system binary skips the test that needs it, except with CI=true, where it fails it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
STOP_TIMEOUT = 10.0


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def need(*names: str, why: str = "") -> None:
    """Skip the test when a binary is missing; fail it instead with CI=true."""
    missing = [name for name in names if which(name) is None]
    if not missing:
        return
    message = f"not installed: {', '.join(missing)}" + (f" ({why})" if why else "")
    if in_ci():
        pytest.fail(f"{message}; CI=true, so these tests must run", pytrace=False)
    pytest.skip(message)


def which(name: str) -> str | None:
    """The binary's path; /usr/sbin and /usr/bin count even when not on PATH."""
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    found = shutil.which(name)
    if found is not None:
        return found
    for folder in ("/usr/sbin", "/usr/bin"):
        path = Path(folder) / name
        if path.exists():
            return str(path)
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def subprocess_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test's environment for a child: this checkout importable, no admin token inherited."""
    env = {k: v for k, v in os.environ.items() if k != "MIRROR_ADMIN_TOKEN"}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def http_status(
    url: str, timeout: float = 2.0, context: ssl.SSLContext | None = None
) -> int | None:
    """The status code of GET `url` (https: trusting what `context` trusts), or None when
    nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, TimeoutError):
        return None


def terminate(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, wait, then SIGKILL; close the pipes to it; return the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    rc = proc.returncode
    assert rc is not None
    return rc


async def stop_process(proc: asyncio.subprocess.Process, grace: float = STOP_TIMEOUT) -> int:
    """`terminate` for a process started with asyncio: SIGTERM, wait, then SIGKILL."""
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            proc.kill()
            await asyncio.wait_for(proc.wait(), grace)
    assert proc.returncode is not None
    return proc.returncode


def log_tail(path: Path, lines: int) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no file)"
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


LOGS = pytest.StashKey[list[tuple[str, Path]]]()


def keep_log(
    node: pytest.Item | pytest.Collector | pytest.FixtureRequest, label: str, path: Path
) -> None:
    """Attach the tail of `path` to the report of this test if it fails (tests/conftest.py)."""
    item = node.node if isinstance(node, pytest.FixtureRequest) else node
    item.stash.setdefault(LOGS, []).append((label, path))
