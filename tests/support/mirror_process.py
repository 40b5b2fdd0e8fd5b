"""The mirror as a real process: `python -m mirror serve --config FILE`, for every suite.

The fake-hub tests run the mirror in-process (aiohttp's TestServer); a test that needs the real
command line (a signal, the log output of `serve`, a client in another network namespace) starts
one of these through the `mirror_processes` fixture (tests/conftest.py).
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .poll import wait_until
from .procs import STOP_TIMEOUT, free_port, http_status, keep_log, subprocess_env, terminate

START_TIMEOUT = 20.0


def process_config(
    upstream_url: str,
    data: Path,
    *,
    tag_ttl: str = "10m",
    credentials: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The config document of a mirror with one upstream (`docker.io`) at `upstream_url`."""
    upstream: dict[str, Any] = {"name": "docker.io", "url": upstream_url}
    if credentials is not None:
        upstream["username"], upstream["password"] = credentials
    return {
        "storage": {"path": str(data)},
        "cache": {"tag_ttl": tag_ttl},
        "upstreams": [upstream],
    }


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for the plain values used here
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def toml_text(document: Mapping[str, Any]) -> str:
    """TOML for the mirror's shape of config: tables of scalars (and lists of them) and
    `[[upstreams]]`."""
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
    """One `mirror serve` process with its own folder; stdout and stderr go to files there.

    `config` is the TOML document as a dict; `server.listen` is set here, to a free port.
    start() after stop() runs it again on the same port and data.
    """

    def __init__(
        self,
        root: Path,
        config: Mapping[str, Any],
        *extra_args: str,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.root = root
        # With `server.tls_cert` set: what the test's own requests trust (the test CA).
        self.client_tls = client_tls
        self.port = free_port()
        self.config = dict(config)
        self.config_path = root / "mirror.toml"
        self.stdout_path = root / "mirror.stdout"
        self.stderr_path = root / "mirror.stderr"
        self.extra_args = extra_args
        self.returncode: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._started = False
        root.mkdir(parents=True, exist_ok=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        scheme = "https" if self.config.get("server", {}).get("tls_cert") else "http"
        return f"{scheme}://{self.host}"

    @property
    def data(self) -> Path:
        return Path(self.config["storage"]["path"])

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not running"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start (or restart) and wait until /healthz answers 200; blocking."""
        for attempt in range(3):
            offset = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0
            try:
                self._start_once()
                self._started = True
                return
            except AssertionError:
                with self.stderr_path.open("rb") as err:
                    err.seek(offset)
                    output = err.read().decode(errors="replace").lower()
                # Another process took the free port before the mirror bound it: pick again
                # (not on a restart, which must keep its port).
                if self._started or attempt == 2 or "address already in use" not in output:
                    raise
                self.port = free_port()

    def _start_once(self) -> None:
        server = {**self.config.get("server", {}), "listen": self.host}
        self.config_path.write_text(toml_text({**self.config, "server": server}))
        args = self.extra_args
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mirror", "serve", "--config", str(self.config_path), *args],
                cwd=self.root,
                env=subprocess_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self._proc = proc
        try:
            wait_until(
                lambda: (
                    proc.poll() is None
                    and http_status(f"{self.url}/healthz", context=self.client_tls) == 200
                ),
                within=START_TIMEOUT,
                interval=0.05,
                alive=lambda: proc.poll() is None,
                what=f"mirror on {self.host}",
            )
            # Ready, but maybe another process answered on the port this one failed to bind.
            assert proc.poll() is None, f"mirror on {self.host} exited; another process answered"
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}; its output:\n{self.output()}") from exc

    def send_signal(self, signum: int) -> None:
        assert self._proc is not None, "not running"
        self._proc.send_signal(signum)

    def stop(self) -> int | None:
        """SIGTERM (then SIGKILL after a grace period); the exit code."""
        if self._proc is not None:
            self.returncode = terminate(self._proc)
            self._proc = None
        return self.returncode

    def output(self) -> str:
        """Everything the process wrote, stdout then stderr."""
        paths = (self.stdout_path, self.stderr_path)
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def stderr_lines(self) -> list[str]:
        text = self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
        return [line for line in text.splitlines() if line.strip()]


@dataclass(frozen=True, slots=True)
class ServeResult:
    """What a `mirror serve` that was expected to exit printed, and its exit code (None: it
    was still running after the timeout, and was stopped)."""

    returncode: int | None
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def serve_expecting_exit(
    root: Path, config: Mapping[str, Any], *args: str, timeout: float = START_TIMEOUT
) -> ServeResult:
    """Run `mirror serve --config FILE ARGS` (config written as given, `server.listen`
    included) and wait for it to exit on its own; blocking."""
    root.mkdir(parents=True, exist_ok=True)
    config_path = root / "mirror.toml"
    config_path.write_text(toml_text(config))
    command = [sys.executable, "-m", "mirror", "serve", "--config", str(config_path), *args]
    with subprocess.Popen(
        command,
        cwd=root,
        env=subprocess_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
            code: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            proc.terminate()
            try:
                out, err = proc.communicate(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            code = None
    return ServeResult(code, out.decode(errors="replace"), err.decode(errors="replace"))


class MirrorProcesses:
    """The `mirror_processes` fixture: start mirror processes; each is stopped at teardown."""

    def __init__(self, root: Path, request: pytest.FixtureRequest) -> None:
        self.root = root
        self.request = request
        self.started: list[MirrorProcess] = []

    def __call__(
        self,
        upstream_url: str | None = None,
        *,
        tag_ttl: str = "10m",
        credentials: tuple[str, str] | None = None,
        config: Mapping[str, Any] | None = None,
        args: Sequence[str] = (),
        client_tls: ssl.SSLContext | None = None,
    ) -> MirrorProcess:
        """A started mirror: in front of `upstream_url`, or with a whole `config` document."""
        root = self.root / f"mirror-{len(self.started)}"
        if config is None:
            assert upstream_url is not None, "an upstream URL or a whole config"
            config = process_config(
                upstream_url, root / "data", tag_ttl=tag_ttl, credentials=credentials
            )
        proc = MirrorProcess(root, config, *args, client_tls=client_tls)
        self.started.append(proc)
        keep_log(self.request, f"mirror-{len(self.started) - 1} stderr", proc.stderr_path)
        proc.start()
        return proc

    def stop_all(self) -> None:
        for proc in self.started:
            proc.stop()
