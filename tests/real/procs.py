"""Small helpers shared by the real-process fixtures: free ports, HTTP polling, stopping."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

STOP_TIMEOUT = 10.0


class ToolMissing(RuntimeError):
    """A system binary the real tests drive is not installed."""


def require_binaries(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise ToolMissing(
            f"not installed: {', '.join(missing)} (Debian packages docker-registry, skopeo)"
        )


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The status code of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status: int = resp.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, TimeoutError):
        return None


def wait_until(
    ready: Callable[[], bool], *, timeout: float, alive: Callable[[], bool], what: str
) -> None:
    """Poll `ready` until it holds; fail early when the process behind it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise RuntimeError(f"{what} exited before it was ready")
        time.sleep(0.05)
    raise TimeoutError(f"{what} was not ready within {timeout:.0f}s")


def terminate(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, wait, then SIGKILL; return the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
    rc = proc.returncode
    assert rc is not None
    return rc


def attach_log_tails(report: pytest.TestReport, logs: list[tuple[str, Path]], lines: int) -> None:
    """Add the last `lines` of each (label, path) log to a failed test's report."""
    for label, path in logs:
        text = path.read_text(errors="replace") if path.exists() else "(no file)"
        tail = "\n".join(text.splitlines()[-lines:])
        report.sections.append((f"{label} ({path})", tail or "(empty)"))
