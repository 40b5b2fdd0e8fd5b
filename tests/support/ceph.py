"""A one-node Ceph with RGW for the S3 suites (`make test-ceph`), from Debian's Ceph 16 packages.

One monitor, one OSD on memstore (objects in memory: no block device, nothing to clean but the
folder), and radosgw's beast frontend, each a foreground child process of the test session, all
as the current user under `root` and on 127.0.0.1 (the OSD takes free ports in Ceph's own
6800-7300 range, on 127.0.0.1 too). `auth none` everywhere (with `ms mon client mode = crc`, or
clients do not agree on a mode with the monitor); RGW still checks SigV4 signatures, against the
user `radosgw-admin user create` makes. Each step is bounded; the whole start takes some 13 s here.
Stopped in reverse order (radosgw, OSD, monitor), each with SIGTERM, then SIGKILL after 10 s.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from .poll import wait_until
from .procs import free_port, terminate, which
from .s3server import BucketChecks

ACCESS_KEY = "mirror-tests"
SECRET_KEY = "mirror-tests-secret-key"
BINARIES = ("monmaptool", "ceph-mon", "ceph-osd", "ceph", "radosgw-admin", "radosgw")
PACKAGES = "ceph-mon ceph-osd ceph-common radosgw"
# Each step's bound; a cold radosgw-admin makes RGW's first pools and waits for them (~10 s).
STEP_TIMEOUT = 90.0
# What memstore reports as the OSD's size; only what is stored takes memory.
MEMSTORE_BYTES = 4 << 30

_CONF = """\
[global]
fsid = {fsid}
mon host = [v2:127.0.0.1:{mon_port}]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind msgr1 = false
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
keyring = /dev/null
run dir = {root}/run
admin socket = {root}/run/$name.asok
pid file = {root}/run/$name.pid
log file = {root}/log/$name.log
crash dir = {root}/crash
mon data = {root}/mon/$id
osd data = {root}/osd/$id
osd objectstore = memstore
memstore device bytes = {memstore_bytes}
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
rgw data = {root}/rgw
rgw frontends = beast endpoint=127.0.0.1:{rgw_port}
"""


class CephError(RuntimeError):
    """A step of the start failed; the message ends with the tails of the daemons' logs."""


class Ceph(BucketChecks):
    """A one-node Ceph under `root`; S3 (RGW) at `endpoint`."""

    def __init__(self, root: Path) -> None:
        missing = [name for name in BINARIES if which(name) is None]
        if missing:
            raise CephError(
                f"MIRROR_TEST_S3=ceph, but not installed: {', '.join(missing)} "
                f"(Debian packages {PACKAGES}; `make test-ceph` installs them)"
            )
        self.root = root
        self.conf = root / "ceph.conf"
        self.log_dir = root / "log"
        self.log_path = self.log_dir / "client.rgw.log"
        self.mon_port = free_port()
        self.s3_port = free_port()
        self.access_key = ACCESS_KEY
        self.secret_key = SECRET_KEY
        self.startup_seconds = 0.0
        self.steps: dict[str, float] = {}
        self._procs: list[subprocess.Popen[bytes]] = []
        self._env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(root)}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    # -- start and stop ------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        try:
            self._step("config", self._configure)
            self._step("monitor", self._start_monitor)
            self._step("osd", self._start_osd)
            self._step("rgw user", self._make_user)
            self._step("radosgw", self._start_radosgw)
        except (CephError, AssertionError, subprocess.SubprocessError, OSError) as exc:
            self.stop()
            raise CephError(f"{exc}\n{self.log_tails()}") from exc
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        """radosgw, then the OSD (it tells the monitor it goes), then the monitor."""
        while self._procs:
            terminate(self._procs.pop())

    def _step(self, name: str, action: Callable[[], None]) -> None:
        began = time.monotonic()
        action()
        self.steps[name] = round(time.monotonic() - began, 2)

    def _configure(self) -> None:
        for folder in ("run", "log", "crash", "mon/a", "osd/0", "rgw"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.fsid = str(uuid.uuid4())
        self.conf.write_text(
            _CONF.format(
                fsid=self.fsid,
                mon_port=self.mon_port,
                rgw_port=self.s3_port,
                root=self.root,
                memstore_bytes=MEMSTORE_BYTES,
            )
        )

    def _start_monitor(self) -> None:
        monmap = self.root / "monmap"
        address = f"[v2:127.0.0.1:{self.mon_port}]"
        self._run("monmaptool", "--create", "--fsid", self.fsid, "--addv", "a", address, monmap)
        self._run("ceph-mon", "-c", self.conf, "--mkfs", "-i", "a", "--monmap", monmap)
        self._daemon("mon.a", "ceph-mon", "-i", "a")
        wait_until(
            lambda: self._accepts(self.mon_port),
            within=STEP_TIMEOUT,
            interval=0.1,
            alive=self._alive,
            what=f"ceph-mon on 127.0.0.1:{self.mon_port}",
        )

    def _start_osd(self) -> None:
        osd_uuid = str(uuid.uuid4())
        osd_id = self._ceph("osd", "new", osd_uuid).strip()
        if osd_id != "0":
            raise CephError(f"`ceph osd new` gave id {osd_id!r}, not 0")
        self._run("ceph-osd", "-c", self.conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid)
        self._daemon("osd.0", "ceph-osd", "-i", "0")

        def up() -> bool:
            stat = json.loads(self._ceph("osd", "stat", "--format", "json"))
            return int(stat.get("num_up_osds", 0)) == 1

        wait_until(up, within=STEP_TIMEOUT, interval=0.2, alive=self._alive, what="osd.0 up")

    def _make_user(self) -> None:
        # Before radosgw starts: radosgw-admin makes the default realm's pools on its own.
        self._run(
            "radosgw-admin", "-c", self.conf, "user", "create", "--uid", "mirror",
            "--display-name", "mirror tests", "--access-key", self.access_key,
            "--secret-key", self.secret_key,
        )  # fmt: skip

    def _start_radosgw(self) -> None:
        self._daemon("client.rgw", "radosgw", "-n", "client.rgw")
        client = self.client()

        def ready() -> bool:
            try:
                client.list_buckets()
            except (BotoCoreError, ClientError):
                return False
            return True

        wait_until(
            ready, within=STEP_TIMEOUT, interval=0.1, alive=self._alive, what=f"RGW {self.endpoint}"
        )

    # -- plumbing ------------------------------------------------------------------------------

    def _run(self, *command: str | Path) -> str:
        """Run one command to its end (bounded); its output, or CephError with it."""
        args = [str(part) for part in command]
        try:
            done = subprocess.run(
                args,
                cwd=self.root,
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=STEP_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise CephError(f"{' '.join(args)}: still running after {STEP_TIMEOUT:g}s") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise CephError(f"{' '.join(args)}: exit {done.returncode}\n{output}")
        return done.stdout.decode(errors="replace")

    def _ceph(self, *args: str) -> str:
        return self._run("ceph", "-c", self.conf, "--connect-timeout", "10", *args)

    def _daemon(self, name: str, binary: str, *args: str) -> None:
        """A daemon in the foreground (-f: its own log file still), a child of this session."""
        with (self.log_dir / f"{name}.stderr").open("ab") as log:
            self._procs.append(
                subprocess.Popen(
                    [binary, "-f", "-c", str(self.conf), *args],
                    cwd=self.root,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                )
            )

    def _alive(self) -> bool:
        return all(proc.poll() is None for proc in self._procs)

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            return False

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of every daemon's log and stderr, for a failed start."""
        parts = []
        for path in sorted(self.log_dir.glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(parts)
