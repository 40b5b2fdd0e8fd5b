"""The real clients, each run inside a Sandbox with its own state under one directory.

Every daemon is started as `nsenter --net=<sandbox> timeout -k 10 <LIFETIME> <daemon> …`: the
sandbox keeps it off every network but loopback, and `timeout` ends it even if the test process
dies before its teardown. Nothing is written under /etc, /var/lib or /run by dockerd or
containerd; podman 4.3 and skopeo still keep their blob-info cache in /var/lib/containers/cache
(containers/image has no setting for it when run as root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from support.poll import wait_until
from support.procs import log_tail, terminate

from .netns import Sandbox

LIFETIME = 900  # seconds: the longest any daemon may live, whatever happens to the test
START_TIMEOUT = 30.0
PULL_TIMEOUT = 120.0
CMD_TIMEOUT = 30.0
DOCKER_CLI = "/usr/bin/docker"  # Debian's docker.io client (not an unrelated /usr/local one)
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"


class ClientError(RuntimeError):
    """A client command failed; the message carries its command line and output."""


def run(
    argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run argv; raise ClientError with its output unless it exits 0."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ClientError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from exc
    if proc.returncode != 0:
        raise ClientError(
            f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout[-3000:]}"
            f"\n{proc.stderr[-3000:]}"
        )
    return proc


def _wait(ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    try:
        wait_until(
            ready,
            within=START_TIMEOUT,
            interval=0.2,
            alive=lambda: proc.poll() is None,
            what=f"{what} ready",
        )
    except AssertionError as exc:
        terminate(proc)
        tail = log_tail(log, 30)
        raise ClientError(f"{exc} (exit {proc.returncode}); its log:\n{tail}") from None


class Daemon:
    """A long-running process inside the sandbox, with its output in `log`."""

    name = "daemon"

    def __init__(self, sandbox: Sandbox, root: Path, log: Path) -> None:
        self.sandbox = sandbox
        self.root = root
        self.log = log
        self._proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    def _spawn(self, argv: Sequence[str], ready: Callable[[], bool]) -> None:
        cmd = self.sandbox.cmd("timeout", "-k", "10", str(LIFETIME), *argv)
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._proc = proc
        _wait(ready, proc, self.name, self.log)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is not None:
            terminate(self._proc, timeout=20)
            self._proc = None


class Containerd(Daemon):
    """containerd 1.6 with root, state, sockets and the `opt` plugin's folder under `root`."""

    name = "containerd"

    @property
    def address(self) -> str:
        return str(self.root / "containerd.sock")

    def config(self) -> str:
        r = self.root
        disabled = [
            "io.containerd.grpc.v1.cri",
            "io.containerd.snapshotter.v1.aufs",
            "io.containerd.snapshotter.v1.btrfs",
            "io.containerd.snapshotter.v1.devmapper",
            "io.containerd.snapshotter.v1.zfs",
        ]
        return (
            "version = 2\n"
            f'root = "{r / "root"}"\n'
            f'state = "{r / "state"}"\n'
            f"disabled_plugins = {json.dumps(disabled)}\n"
            "[grpc]\n"
            f'  address = "{self.address}"\n'
            "[ttrpc]\n"
            f'  address = "{self.address}.ttrpc"\n'
            '[plugins."io.containerd.internal.v1.opt"]\n'
            f'  path = "{r / "opt"}"\n'
        )

    def start(self) -> None:
        config = self.root / "config.toml"
        config.write_text(self.config())
        self._spawn(["containerd", "--config", str(config)], self._answers)

    def _answers(self) -> bool:
        try:
            self.ctr("version", timeout=5)
        except ClientError:
            return False
        return True

    def ctr(self, *args: str, timeout: float = CMD_TIMEOUT) -> str:
        # ctr does the pull itself (resolve and fetch happen in the client): run it in the sandbox.
        argv = self.sandbox.cmd("ctr", "--address", self.address, *args)
        return run(argv, timeout=timeout).stdout

    def write_hosts(self, mirror_url: str, *, ca: Path | None = None) -> Path:
        """A hosts directory sending docker.io to the mirror; returns the directory.

        With `ca`, the mirror's certificate is verified against that CA file (`ca = …`)."""
        hosts_dir = self.root / "certs.d"
        (hosts_dir / "docker.io").mkdir(parents=True, exist_ok=True)
        trust = f'  ca = "{ca}"\n' if ca is not None else ""
        (hosts_dir / "docker.io" / "hosts.toml").write_text(
            'server = "https://registry-1.docker.io"\n'
            "\n"
            f'[host."{mirror_url}"]\n'
            '  capabilities = ["pull", "resolve"]\n'
            f"{trust}"
        )
        return hosts_dir

    def pull(self, ref: str, hosts_dir: Path, *, http_dump: bool = False) -> str:
        args = ["images", "pull", "--hosts-dir", str(hosts_dir), "--snapshotter", "native"]
        if http_dump:
            args.append("--http-dump")
        argv = self.sandbox.cmd("ctr", "--address", self.address, *args, ref)
        proc = run(argv, timeout=PULL_TIMEOUT)
        return proc.stdout + proc.stderr

    def images(self) -> dict[str, str]:
        """Image name -> digest of its target (the manifest or index it was pulled as)."""
        out = self.ctr("images", "ls")
        result: dict[str, str] = {}
        for line in out.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 3:
                result[fields[0]] = fields[2]
        return result


class Dockerd(Daemon):
    """dockerd 20.10 with `registry-mirrors`, on a containerd of its own, state under `root`."""

    name = "dockerd"

    def __init__(
        self,
        sandbox: Sandbox,
        root: Path,
        log: Path,
        mirror_url: str,
        containerd: str,
        *,
        insecure: bool = True,
    ) -> None:
        super().__init__(sandbox, root, log)
        self.mirror_url = mirror_url
        self.containerd = containerd
        # False for a TLS mirror: its certificate is verified (CA from /etc/docker/certs.d).
        self.insecure = insecure
        self.env = {**os.environ, "DOCKER_CONFIG": str(root / "cli")}

    @property
    def socket(self) -> str:
        return str(self.root / "docker.sock")

    def daemon_json(self) -> dict[str, object]:
        r = self.root
        mirror_host = self.mirror_url.split("://", 1)[1]
        return {
            "registry-mirrors": [self.mirror_url],
            "insecure-registries": [mirror_host] if self.insecure else [],
            "storage-driver": "vfs",
            "iptables": False,
            "ip6tables": False,
            "bridge": "none",
            "data-root": str(r / "data"),
            "exec-root": str(r / "exec"),
            "pidfile": str(r / "docker.pid"),
            "hosts": [f"unix://{self.socket}"],
            "deprecated-key-path": str(r / "key.json"),
        }

    def start(self) -> None:
        config = self.root / "daemon.json"
        config.write_text(json.dumps(self.daemon_json(), indent=1))
        argv = [DOCKERD, "--config-file", str(config), "--containerd", self.containerd]
        self._spawn(argv, self._answers)

    def _answers(self) -> bool:
        if not os.path.exists(self.socket):
            return False
        try:
            self.docker("version", timeout=5)
        except ClientError:
            return False
        return True

    def docker(self, *args: str, timeout: float = CMD_TIMEOUT) -> str:
        argv = self.sandbox.cmd(DOCKER_CLI, "-H", f"unix://{self.socket}", *args)
        return run(argv, timeout=timeout, env=self.env).stdout

    def pull(self, name: str) -> str:
        return self.docker("pull", name, timeout=PULL_TIMEOUT)

    def inspect(self, name: str) -> dict[str, object]:
        docs = json.loads(self.docker("image", "inspect", name))
        assert isinstance(docs, list) and len(docs) == 1
        doc: dict[str, object] = docs[0]
        return doc

    def info(self) -> dict[str, object]:
        doc: dict[str, object] = json.loads(self.docker("info", "--format", "{{json .}}"))
        return doc


class Podman:
    """podman 4.3 with its root, runroot, tmpdir, config and registries.conf under `root`."""

    def __init__(
        self, sandbox: Sandbox, root: Path, mirror_host: str, *, cert_dir: Path | None = None
    ) -> None:
        """With `cert_dir`, the mirror speaks TLS: its certificate is verified against the CAs
        in cert_dir/<host:port>/ca.crt (`--cert-dir`; an empty folder trusts no test CA)."""
        self.sandbox = sandbox
        self.root = root
        self.cert_dir = cert_dir
        insecure = "insecure = true\n" if cert_dir is None else ""
        for sub in ("tmp", "config", "data", "runtime", "networks"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "runtime").chmod(0o700)
        (root / "registries.conf").write_text(
            "[[registry]]\n"
            'prefix = "docker.io"\n'
            'location = "docker.io"\n'
            "\n"
            "[[registry.mirror]]\n"
            f'location = "{mirror_host}"\n'
            f"{insecure}"
        )
        (root / "containers.conf").write_text(
            "[engine]\n"
            'events_logger = "file"\n'
            f'events_logfile_path = "{root / "events.log"}"\n'
            "[network]\n"
            f'network_config_dir = "{root / "networks"}"\n'
        )
        (root / "policy.json").write_text('{"default": [{"type": "insecureAcceptAnything"}]}\n')
        # podman refuses an --authfile that does not exist: an empty one until `login`.
        self.authfile.write_text('{"auths": {}}\n')
        self.env = {
            **os.environ,
            "CONTAINERS_REGISTRIES_CONF": str(root / "registries.conf"),
            "CONTAINERS_CONF": str(root / "containers.conf"),
            "XDG_CONFIG_HOME": str(root / "config"),
            "XDG_DATA_HOME": str(root / "data"),
            "XDG_RUNTIME_DIR": str(root / "runtime"),
            "TMPDIR": str(root / "tmp"),
        }

    def global_args(self) -> list[str]:
        r = self.root
        return [
            "--root",
            str(r / "root"),
            "--runroot",
            str(r / "run"),
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
            "--tmpdir",
            str(r / "tmp"),
        ]

    def podman(self, *args: str, timeout: float = CMD_TIMEOUT) -> str:
        argv = self.sandbox.cmd("timeout", "-k", "5", str(int(timeout)), "podman")
        argv += [*self.global_args(), *args]
        return run(argv, timeout=timeout + 10, env=self.env).stdout

    def tls_args(self) -> list[str]:
        return [] if self.cert_dir is None else ["--cert-dir", str(self.cert_dir)]

    @property
    def authfile(self) -> Path:
        return self.root / "auth.json"

    def pull(self, ref: str) -> str:
        policy = str(self.root / "policy.json")
        args = ["--signature-policy", policy, "--authfile", str(self.authfile), *self.tls_args()]
        return self.podman("pull", *args, ref, timeout=PULL_TIMEOUT)

    def login(self, registry: str, username: str, password: str) -> str:
        """`podman login` to the mirror; the credentials land in `authfile`, which pull uses."""
        args = ["--authfile", str(self.authfile), *self.tls_args()]
        return self.podman("login", *args, "-u", username, "-p", password, registry)

    def inspect(self, ref: str) -> dict[str, object]:
        docs = json.loads(self.podman("image", "inspect", ref))
        assert isinstance(docs, list) and len(docs) == 1
        doc: dict[str, object] = docs[0]
        return doc
