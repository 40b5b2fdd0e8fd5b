"""A real CNCF distribution registry (Debian's docker-registry) as a subprocess, and its log.

The one way the tests start docker-registry: anonymous (the upstream of tests/real and
tests/clients), or with `auth: token` (tests/auth), where only a token server's tokens pass.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .images import Image
from .poll import wait_until
from .procs import free_port, http_status, need, terminate

START_TIMEOUT = 15.0
SYNC_TIMEOUT = 5.0
SYNC_GRACE = 0.05
SYNC_PARAM = "mirror-test-sync"

_BLOB = re.compile(r"^/v2/.+/blobs/(sha256:[0-9a-f]{64})(\?.*)?$")
_UPLOAD = re.compile(r"^/v2/.+/blobs/uploads/")
_MANIFEST = re.compile(r"^/v2/.+/manifests/([^/?]+)(\?.*)?$")


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the registry logged it ("response completed" line)."""

    method: str
    uri: str
    status: int

    @property
    def kind(self) -> str:
        """ping, manifest, blob, upload or other."""
        path = self.uri.split("?", 1)[0]
        if path in ("/v2", "/v2/"):
            return "ping"
        if _UPLOAD.match(self.uri):
            return "upload"
        if _BLOB.match(self.uri):
            return "blob"
        if _MANIFEST.match(self.uri):
            return "manifest"
        return "other"

    @property
    def reference(self) -> str | None:
        """The digest of a blob, or the tag/digest of a manifest."""
        m = _BLOB.match(self.uri) or _MANIFEST.match(self.uri)
        return m.group(1) if m else None

    def __str__(self) -> str:
        return f"{self.method} {self.uri} -> {self.status}"


def parse_log(text: str) -> list[Request]:
    """Requests from distribution's JSON log (log.formatter: json), sync probes left out."""
    requests: list[Request] = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not str(entry.get("msg", "")).startswith("response completed"):
            continue
        uri = str(entry.get("http.request.uri", ""))
        if SYNC_PARAM in uri:
            continue
        requests.append(
            Request(
                method=str(entry.get("http.request.method", "")),
                uri=uri,
                status=int(entry.get("http.response.status", 0)),
            )
        )
    return requests


def count(requests: list[Request]) -> Counter[tuple[str, str]]:
    """Requests counted by (method, kind), e.g. ("GET", "blob")."""
    return Counter((r.method, r.kind) for r in requests)


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """distribution's `auth: token`: tokens from `realm`, signed by a key `bundle` certifies."""

    realm: str
    service: str
    issuer: str
    bundle: Path


def _config_yaml(storage: Path, port: int, auth: TokenAuth | None) -> str:
    # JSON is YAML; distribution reads it as its config file.
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "info", "formatter": "json", "accesslog": {"disabled": False}},
        "storage": {"filesystem": {"rootdirectory": str(storage)}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "mirror-tests"},
    }
    if auth is not None:
        config["auth"] = {
            "token": {
                "realm": auth.realm,
                "service": auth.service,
                "issuer": auth.issuer,
                "rootcertbundle": str(auth.bundle),
            }
        }
    return json.dumps(config, indent=1) + "\n"


class Registry:
    """docker-registry on 127.0.0.1; stop() and start() keep the port, storage and logs."""

    def __init__(
        self, root: Path, port: int | None = None, *, auth: TokenAuth | None = None
    ) -> None:
        need("docker-registry")
        self.root = root
        self.auth = auth
        # Without a token, /v2/ answers 401 with the Bearer challenge: that is "up" then.
        self.ping_status = 200 if auth is None else 401
        self.images: dict[str, Image] = {}  # what push_images put there, by name
        self.storage = root / "storage"
        self.log_path = root / "registry.log"  # app log (stderr): one line per request
        self.access_path = root / "access.log"  # combined access log (stdout): every request
        self.config_path = root / "config.yml"
        self.port = port or free_port()
        self._fixed_port = port is not None
        self._proc: subprocess.Popen[bytes] | None = None
        self._ever_started = False
        root.mkdir(parents=True, exist_ok=True)
        self.storage.mkdir(exist_ok=True)

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
        if self.running:
            return
        for attempt in range(5):
            try:
                self._start_once()
                return
            except RuntimeError:
                # Another process took the port between free_port() and bind: pick again,
                # unless the port must stay (a restart); then the old socket may still linger.
                if attempt == 4:
                    raise
                if not self._fixed_port and not self._ever_started:
                    self.port = free_port()
                time.sleep(0.2)

    def _start_once(self) -> None:
        self.config_path.write_text(_config_yaml(self.storage, self.port, self.auth))
        with open(self.log_path, "ab") as err, open(self.access_path, "ab") as out:
            proc = subprocess.Popen(
                ["docker-registry", "serve", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        self._proc = proc
        try:
            wait_until(
                lambda: http_status(f"{self.url}/v2/?{SYNC_PARAM}=start") == self.ping_status,
                within=START_TIMEOUT,
                interval=0.05,
                alive=lambda: proc.poll() is None,
                what=f"docker-registry on {self.host}",
            )
        except AssertionError as exc:
            terminate(proc)
            self._proc = None
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from exc
        self._ever_started = True

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None

    def log_tail(self, lines: int = 20) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def requests(self) -> list[Request]:
        """Every request the registry has logged so far (all runs of this instance)."""
        self.sync()
        return parse_log(self.log_path.read_text(errors="replace"))

    def access_count(self) -> int:
        """Lines in the access log: every request, routed or not, sync probes left out."""
        self.sync()
        text = self.access_path.read_text(errors="replace")
        return sum(1 for line in text.splitlines() if line.strip() and SYNC_PARAM not in line)

    def mark(self) -> int:
        """A position in the log; requests_since(mark) lists what came after it."""
        return len(self.requests())

    def requests_since(self, mark: int) -> list[Request]:
        return self.requests()[mark:]

    def sync(self) -> None:
        """Wait until requests already answered are in the log files.

        The registry writes a request's line just after its response; one more request,
        answered after them, whose line has appeared in both logs, orders them.
        """
        if not self.running:
            return
        token = uuid.uuid4().hex
        url = f"{self.url}/v2/?{SYNC_PARAM}={token}"
        if http_status(url) != self.ping_status:
            raise RuntimeError(f"registry did not answer {url}")

        def logged() -> bool:
            app = self.log_path.read_text(errors="replace")
            return token in app and token in self.access_path.read_text(errors="replace")

        wait_until(logged, within=SYNC_TIMEOUT, what="the registry logged the sync request")
        # Requests answered just before the probe may log a moment after it.
        time.sleep(SYNC_GRACE)
