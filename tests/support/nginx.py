"""Debian's nginx as a subprocess, in front of mirror processes, with the shipped config.

The server and upstream blocks are deploy/nginx/mirror-replicas.conf itself: only the `server`
lines of its upstream block (the replicas' addresses), its `listen` line (a free port on
127.0.0.1) and, for the round-robin comparison, its `hash` line are rewritten. Around them go
the few main-context lines a non-packaged nginx needs (pid, logs and temp folders under the
test's folder) and an access log that names the replica each request went to.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .poll import wait_until
from .procs import REPO_ROOT, free_port, http_status, need, terminate, which

SHIPPED = REPO_ROOT / "deploy" / "nginx" / "mirror-replicas.conf"
UPSTREAM = "mirror_replicas"
START_TIMEOUT = 10.0

_UPSTREAM_BLOCK = re.compile(r"upstream\s+" + UPSTREAM + r"\s*\{(?P<body>[^}]*)\}")
_SERVER_LINE = re.compile(r"^(?P<indent>\s*)server\s+\S+(?P<params>[^;]*);\s*$", re.MULTILINE)
_HASH_LINE = re.compile(r"^\s*hash\s+[^;]*;\s*\n", re.MULTILINE)
_LISTEN_LINE = re.compile(r"^(?P<indent>\s*)listen\s+[^;]*;", re.MULTILINE)

# One line per request: method, URI, status, the replica it went to, bytes sent to the client.
_LOG_FORMAT = "$request_method|$request_uri|$status|$upstream_addr|$body_bytes_sent"


def render(shipped: str, backends: list[str], listen: str, *, hashing: bool = True) -> str:
    """The shipped server and upstream blocks with the test's addresses (and no `hash` line
    when `hashing` is off: nginx's default, round-robin)."""
    block = _UPSTREAM_BLOCK.search(shipped)
    if block is None:
        raise ValueError(f"no `upstream {UPSTREAM}` block in the shipped config")
    body = block.group("body")
    servers = list(_SERVER_LINE.finditer(body))
    if not servers:
        raise ValueError("the upstream block names no server")
    indent, params = servers[0].group("indent"), servers[0].group("params")
    replaced = "".join(f"{indent}server {address}{params};\n" for address in backends)
    body = body[: servers[0].start()] + replaced + body[servers[-1].end() + 1 :]
    if not hashing:
        body, removed = _HASH_LINE.subn("", body)
        if removed != 1:
            raise ValueError("expected one `hash` line in the upstream block")
    text = shipped[: block.start("body")] + body + shipped[block.end("body") :]
    text, listens = _LISTEN_LINE.subn(lambda m: f"{m.group('indent')}listen {listen};", text)
    if listens != 1:
        raise ValueError(f"expected one `listen` line, found {listens}")
    return text


@dataclass(frozen=True, slots=True)
class Routed:
    """One request as nginx logged it."""

    method: str
    uri: str
    status: int
    replica: str  # the upstream address it went to ("-" when none; "a, b" after a retry)
    sent: int


class Nginx:
    """nginx on 127.0.0.1 in front of `backends` (host:port), from the shipped config."""

    def __init__(self, root: Path, backends: list[str], *, hashing: bool = True) -> None:
        need("nginx", why="Debian package nginx-light")
        binary = which("nginx")
        assert binary is not None
        self.binary = binary
        self.root = root
        self.backends = backends
        self.hashing = hashing
        self.port = free_port()
        self.config_path = root / "nginx.conf"
        self.error_log = root / "error.log"
        self.access_log = root / "access.log"
        self._proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def config_text(self) -> str:
        tmp = self.root / "tmp"
        served = render(SHIPPED.read_text(), self.backends, self.host, hashing=self.hashing)
        temp_paths = "\n".join(
            f"    {kind}_temp_path {tmp / kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return (
            "daemon off;\n"
            "master_process on;\n"
            "worker_processes 2;\n"
            f"pid {self.root / 'nginx.pid'};\n"
            f"error_log {self.error_log} info;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    log_format routed '{_LOG_FORMAT}';\n"
            f"    access_log {self.access_log} routed;\n"
            f"{temp_paths}\n"
            f"{served}"
            "}\n"
        )

    def start(self) -> None:
        for attempt in range(3):
            try:
                self._start_once()
                return
            except AssertionError:
                if attempt == 2 or "Address already in use" not in self.log_tail():
                    raise
                self.port = free_port()

    def _start_once(self) -> None:
        self.config_path.write_text(self.config_text())
        command = [self.binary, "-p", str(self.root), "-c", str(self.config_path)]
        command += ["-e", str(self.error_log)]
        with (self.root / "nginx.out").open("ab") as out:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self._proc = proc
        try:
            wait_until(
                lambda: http_status(f"{self.url}/healthz") == 200,
                within=START_TIMEOUT,
                interval=0.05,
                alive=lambda: proc.poll() is None,
                what=f"nginx on {self.host}",
            )
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}\n{self.log_tail()}") from exc

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None

    def log_tail(self, lines: int = 20) -> str:
        paths = (self.root / "nginx.out", self.error_log)
        text = "".join(p.read_text(errors="replace") for p in paths if p.exists())
        return "\n".join(text.splitlines()[-lines:])

    def routed(self) -> list[Routed]:
        """Every request nginx has logged (a request's line is written when it ends)."""
        text = self.access_log.read_text(errors="replace") if self.access_log.exists() else ""
        found: list[Routed] = []
        for line in text.splitlines():
            method, uri, status, replica, sent = line.split("|")
            found.append(Routed(method, uri, int(status), replica, int(sent)))
        return found
