"""docker-registry with `auth: token`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from real.procs import free_port, http_status, require_binaries, terminate, wait_until
from real.registry import Request, parse_log

from .tokens import ISSUER, SERVICE

START_TIMEOUT = 20.0


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
