"""The mirror as a real subprocess: `python -m mirror serve --config FILE`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .procs import free_port, http_status, terminate, wait_until

START_TIMEOUT = 20.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def mirror_config(
    *,
    port: int,
    data: Path,
    upstream_url: str,
    tag_ttl: str,
    credentials: tuple[str, str] | None = None,
) -> str:
    login = ""
    if credentials is not None:
        username, password = (json.dumps(value) for value in credentials)
        login = f"username = {username}\npassword = {password}\n"
    return (
        "[server]\n"
        f'listen = "127.0.0.1:{port}"\n'
        "[storage]\n"
        f'path = "{data}"\n'
        "[cache]\n"
        f'tag_ttl = "{tag_ttl}"\n'
        "[[upstreams]]\n"
        'name = "docker.io"\n'
        f'url = "{upstream_url}"\n' + login
    )


class MirrorProcess:
    """One mirror process with its own data directory; stderr goes to a file."""

    def __init__(
        self,
        root: Path,
        upstream_url: str,
        *,
        tag_ttl: str = "10m",
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.root = root
        self.upstream_url = upstream_url
        self.tag_ttl = tag_ttl
        self.credentials = credentials
        self.data = root / "data"
        self.config_path = root / "mirror.toml"
        self.stderr_path = root / "mirror.stderr"
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> None:
        """Start (or restart, on the same port and data) and wait until GET /v2/ is 200."""
        first_start = self.returncode is None
        for attempt in range(3):
            offset = self.stderr_path.stat().st_size if self.stderr_path.exists() else 0
            try:
                self._start_once()
                return
            except RuntimeError:
                with open(self.stderr_path, "rb") as f:
                    f.seek(offset)
                    output = f.read().decode(errors="replace").lower()
                # Another process took the free port before the mirror bound it: pick again.
                retry = first_start and attempt < 2 and "address already in use" in output
                if not retry:
                    raise
                self.port = free_port()

    def _start_once(self) -> None:
        self.config_path.write_text(
            mirror_config(
                port=self.port,
                data=self.data,
                upstream_url=self.upstream_url,
                tag_ttl=self.tag_ttl,
                credentials=self.credentials,
            )
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.stderr_path, "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "mirror", "serve", "--config", str(self.config_path)],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        self._proc = proc
        try:
            wait_until(
                lambda: proc.poll() is None and http_status(f"{self.url}/v2/") == 200,
                timeout=START_TIMEOUT,
                alive=lambda: proc.poll() is None,
                what=f"mirror on {self.host}",
            )
            if proc.poll() is not None:
                raise RuntimeError(f"mirror on {self.host} exited; another process answered")
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}; its output:\n{self.stderr_text()}") from exc

    def stop(self) -> int | None:
        if self._proc is not None:
            self.returncode = terminate(self._proc)
            self._proc = None
        return self.returncode

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stderr_text(self, max_chars: int = 20_000) -> str:
        if not self.stderr_path.exists():
            return ""
        text = self.stderr_path.read_text(errors="replace")
        return text[-max_chars:]
