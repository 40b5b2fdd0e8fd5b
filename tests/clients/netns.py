"""A network namespace with only `lo` (and a private mount namespace) for the real clients.

dockerd, containerd and podman go to registry-1.docker.io when a mirror fails. Every one of them
runs inside a `Sandbox`: network and mount namespaces held open by `unshare --net --mount sleep N`,
entered with `nsenter --net=… --mount=…`; only the loopback interface exists there (and is up).
Nothing run in it can reach any other host. The mirror and the upstream registry stay in the
host's namespaces; a forwarder process (forward.py) listens inside the sandbox on the mirror's port
and connects to the mirror outside, so a client in the sandbox reaches the mirror at
127.0.0.1:<mirror port> and nothing else.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

from support.poll import wait_until
from support.procs import terminate

FORWARD_SCRIPT = Path(__file__).with_name("forward.py")
START_TIMEOUT = 10.0
CMD_TIMEOUT = 20.0
HOLD_SECONDS = 1800  # the holder ends by itself even if the test process dies
# Fresh tmpfs over the places the daemons write to whatever their config says: dockerd makes
# /run/docker/plugins, podman /run/containers/networks, /dev/shm/libpod_lock and (as containers/
# image does for root) /var/lib/containers/cache. In the sandbox's own mount namespace they land
# in memory and vanish with it. /tmp, where all the state directories are, stays shared.
PRIVATE_MOUNTS = (
    "mount -n -t tmpfs -o mode=0755 sandbox-run /run"
    " && mount -n -t tmpfs -o mode=1777 sandbox-shm /dev/shm"
    " && if [ -d /var/lib/containers ]; then"
    " mount -n -t tmpfs -o mode=0700 sandbox-containers /var/lib/containers; fi"
)


class SandboxError(RuntimeError):
    """The namespace could not be made, or is not what it must be."""


def _ns_id(path: str) -> str:
    return os.readlink(path)


class Sandbox:
    """A network namespace with only `lo` up; run commands in it with `cmd()`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._holder: subprocess.Popen[bytes] | None = None
        self._forwarders: list[subprocess.Popen[bytes]] = []

    @property
    def path(self) -> str:
        assert self._holder is not None, "sandbox not started"
        return f"/proc/{self._holder.pid}/ns/net"

    def start(self) -> None:
        own = (_ns_id("/proc/self/ns/net"), _ns_id("/proc/self/ns/mnt"))
        holder = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "sleep", str(HOLD_SECONDS)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._holder = holder
        # unshare(2) runs just before exec: wait until the holder's namespace is a new one.

        def unshared() -> bool:
            if holder.poll() is not None:
                err = holder.stderr.read().decode(errors="replace") if holder.stderr else ""
                raise SandboxError(f"unshare --net failed ({holder.returncode}): {err}")
            try:
                mine = (_ns_id(self.path), _ns_id(self.mnt_path))
            except OSError:
                return False
            return mine[0] != own[0] and mine[1] != own[1]

        try:
            wait_until(unshared, within=START_TIMEOUT, what="unshare --net made a namespace")
        except (SandboxError, AssertionError) as exc:
            self.close()
            raise SandboxError(str(exc)) from None
        self.run("ip", "link", "set", "lo", "up")
        self.run("sh", "-c", PRIVATE_MOUNTS)
        links = self.links()
        if links != ["lo"]:
            self.close()
            raise SandboxError(f"the sandbox must have only lo, it has {links}")

    @property
    def mnt_path(self) -> str:
        assert self._holder is not None, "sandbox not started"
        return f"/proc/{self._holder.pid}/ns/mnt"

    def cmd(self, *argv: str) -> list[str]:
        """argv, to be run inside the namespaces."""
        return ["nsenter", f"--net={self.path}", f"--mount={self.mnt_path}", "--", *argv]

    def run(self, *argv: str, timeout: float = CMD_TIMEOUT) -> str:
        proc = subprocess.run(
            self.cmd(*argv), capture_output=True, timeout=timeout, check=False, text=True
        )
        if proc.returncode != 0:
            raise SandboxError(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def bind(self, source: Path, target: str) -> None:
        """Mount the host folder `source` over `target`, for the sandbox's processes only (its
        own mount namespace): a daemon's fixed path (/etc/docker) then holds the test's files."""
        self.run("mount", "-n", "--bind", str(source), target)

    def links(self) -> list[str]:
        """The names of the namespace's network interfaces."""
        out = self.run("ip", "-o", "link", "show")
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line]

    def routes(self) -> str:
        return self.run("ip", "-o", "route", "show", "table", "all")

    def add_address(self, address: str) -> None:
        """One more address on the sandbox's `lo` (still the only interface, so the address
        leads nowhere else): for a client that treats 127.0.0.0/8 differently."""
        self.run("ip", "addr", "add", f"{address}/32", "dev", "lo")

    def forward(
        self, port: int, target: str, *, address: str = "127.0.0.1", tally: Path | None = None
    ) -> None:
        """Listen on address:port in the sandbox; connect to target (host:port) outside it.

        With `tally`, that file counts the connections and the bytes each way (forward.py)."""
        host, target_port = target.rsplit(":", 1)
        log = self.log_dir / f"forward-{address}-{port}.log"
        spec = f"{address}:{port}:{host}:{target_port}"
        counting = ["--tally", str(tally)] if tally is not None else []
        with open(log, "ab") as err:
            proc = subprocess.Popen(
                [sys.executable, str(FORWARD_SCRIPT), *counting, self.path, spec],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
            )
        self._forwarders.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT)
        line = proc.stdout.readline() if ready else b""  # "ready", or EOF when it failed
        if line.strip() != b"ready":
            terminate(proc)
            raise SandboxError(f"forwarder to {target} did not start: {log.read_text()}")

    def close(self) -> None:
        for proc in self._forwarders:
            terminate(proc)
        self._forwarders.clear()
        if self._holder is not None:
            terminate(self._holder)
            self._holder = None
