"""docker-registry with `auth: token`, and a mirror process configured with credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from real.procs import free_port, http_status, require_binaries, terminate, wait_until
from real.registry import Request, parse_log

from .tokens import ISSUER, SERVICE

START_TIMEOUT = 20.0
REPO_ROOT = Path(__file__).resolve().parents[2]


class TokenRegistry:
    """A real docker-registry that accepts only bearer tokens from `realm` signed for `bundle`."""

    def __init__(self, root: Path, realm: str, bundle: Path) -> None:
        require_binaries("docker-registry")
        self.root = root
        self.realm = realm
        self.bundle = bundle
        self.port = free_port()
        self.log_path = root / "registry.log"
        self.config_path = root / "config.yml"
        self._proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def config(self) -> dict[str, object]:
        return {
            "version": 0.1,
            "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": True}},
            "storage": {"filesystem": {"rootdirectory": str(self.root / "storage")}},
            "http": {"addr": self.host, "secret": "mirror-tests"},
            "auth": {
                "token": {
                    "realm": self.realm,
                    "service": SERVICE,
                    "issuer": ISSUER,
                    "rootcertbundle": str(self.bundle),
                }
            },
        }

    def start(self) -> None:
        self.config_path.write_text(json.dumps(self.config(), indent=1) + "\n")
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                ["docker-registry", "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._proc = proc
        try:
            # Without a token, /v2/ answers 401 with the Bearer challenge: that is "ready".
            wait_until(
                lambda: http_status(f"{self.url}/v2/") == 401,
                timeout=START_TIMEOUT,
                alive=lambda: proc.poll() is None,
                what=f"docker-registry (token auth) on {self.host}",
            )
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.log_path.read_text(errors='replace')}") from exc

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None

    def requests(self) -> list[Request]:
        return parse_log(self.log_path.read_text(errors="replace"))


def mirror_toml(
    port: int, data: Path, upstream_url: str, credentials: tuple[str, str] | None
) -> str:
    text = (
        "[server]\n"
        f'listen = "127.0.0.1:{port}"\n'
        "[storage]\n"
        f'path = "{data}"\n'
        "[cache]\n"
        'tag_ttl = "10m"\n'
        "[[upstreams]]\n"
        'name = "docker.io"\n'
        f'url = "{upstream_url}"\n'
    )
    if credentials is not None:
        text += (
            f"username = {json.dumps(credentials[0])}\npassword = {json.dumps(credentials[1])}\n"
        )
    return text


class CredentialedMirror:
    """`python -m mirror serve --config FILE` whose upstream has optional username/password."""

    def __init__(self, root: Path, upstream_url: str, credentials: tuple[str, str] | None) -> None:
        self.root = root
        self.port = free_port()
        self.config_path = root / "mirror.toml"
        self.stderr_path = root / "mirror.stderr"
        self._proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            mirror_toml(self.port, root / "data", upstream_url, credentials)
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
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
                lambda: http_status(f"{self.url}/v2/") == 200,
                timeout=START_TIMEOUT,
                alive=lambda: proc.poll() is None,
                what=f"mirror on {self.host}",
            )
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.stderr_text()}") from exc

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None

    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""
