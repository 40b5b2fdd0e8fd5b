"""Building the repository's Dockerfile offline: a Debian base, a wheelhouse, a dockerd that builds.

No base image can be pulled here, and `docker build` has no network: the base is made from
Debian's packages with mmdebstrap and `docker import`ed, and pip installs from a wheelhouse the
host downloads first (for the base's Python, whatever the host's). Both are cached under
CACHE_ROOT, keyed by what they are made from; a clean machine (CI) makes them in about a minute.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

from .daemons import DOCKER_CLI, Dockerd, run
from .netns import Sandbox

REPO = Path(__file__).resolve().parents[2]
# Shared by every checkout on the machine; MIRROR_TEST_CACHE moves it.
CACHE_ROOT = Path(os.environ.get("MIRROR_TEST_CACHE", "/var/tmp/mirror-test-cache"))
CACHE_DAYS = 7  # Debian's security updates: a base older than this is made again

SUITE = "bookworm"
BASE_PYTHON = "3.11"  # bookworm's python3
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
BASE_TAG = f"mirror-test-base:{SUITE}"
# What a build context holds: the .dockerignore allow-list, the Dockerfile, the ignore file.
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")
CONTEXT_TREES = ("mirror", "deploy/container")

MMDEBSTRAP_TIMEOUT = 600.0
PIP_TIMEOUT = 300.0
IMPORT_TIMEOUT = 180.0
BUILD_TIMEOUT = 600.0


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _fresh(path: Path) -> bool:
    return path.exists() and time.time() - path.stat().st_mtime < CACHE_DAYS * 86400


def base_tarball() -> Path:
    """A root filesystem tarball of Debian `SUITE` with BASE_PACKAGES (mmdebstrap, as root)."""
    key = _key(SUITE, "apt", *BASE_PACKAGES)
    path = CACHE_ROOT / f"base-{SUITE}-{key}.tar"
    if _fresh(path):
        return path
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.tar")
    argv = [
        "mmdebstrap",
        "--quiet",
        "--variant=apt",
        "--format=tar",
        f"--include={','.join(BASE_PACKAGES)}",
        SUITE,
        str(partial),
    ]
    try:
        # No mirror argument: Debian's default mirror, with updates and security added.
        subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
            timeout=MMDEBSTRAP_TIMEOUT,
        )
    except subprocess.CalledProcessError as exc:
        partial.unlink(missing_ok=True)
        err = exc.stderr.decode(errors="replace")[-3000:]
        raise RuntimeError(f"mmdebstrap exited {exc.returncode}:\n{err}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    return path


def requirements() -> list[str]:
    """mirror's dependencies and its build backend: what `pip install .` needs offline."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    deps: list[str] = project["project"]["dependencies"]
    backend: list[str] = project["build-system"]["requires"]
    return sorted({*deps, *backend})


def wheelhouse(python: str = BASE_PYTHON) -> Path:
    """Binary wheels of every requirement for CPython `python` on x86-64 Linux (glibc)."""
    reqs = requirements()
    path = CACHE_ROOT / f"wheels-cp{python.replace('.', '')}-{_key(python, *reqs)}"
    if _fresh(path):
        return path
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    abi = "cp" + python.replace(".", "")
    platforms = ("manylinux_2_28_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
    argv = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(partial)]
    argv += ["--only-binary=:all:", "--python-version", python, "--implementation", "cp"]
    argv += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
    for platform in platforms:
        argv += ["--platform", platform]
    try:
        run([*argv, *reqs], timeout=PIP_TIMEOUT)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)
    return path


def build_context(dest: Path, wheels: Path | None) -> Path:
    """A copy of the repository's build context at dest, with `wheels/` when given."""
    dest.mkdir(parents=True)
    for name in CONTEXT_FILES:
        shutil.copy2(REPO / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for tree in CONTEXT_TREES:
        shutil.copytree(REPO / tree, dest / tree, ignore=ignore)
    if wheels is not None:
        shutil.copytree(wheels, dest / "wheels")
    return dest


class BuildDockerd(Dockerd):
    """A dockerd that builds and runs images: no registry to pull from, overlay2 storage.

    It shares the sandbox's network namespace (only `lo`), so `docker build --network none` and
    `docker run --network host` reach nothing but what listens on the sandbox's loopback.
    """

    name = "dockerd (build)"

    def __init__(self, sandbox: Sandbox, root: Path, log: Path, containerd: str) -> None:
        super().__init__(sandbox, root, log, mirror_url="", containerd=containerd)

    def daemon_json(self) -> dict[str, object]:
        r = self.root
        return {
            # overlay2 (on the host's ext4 or xfs): vfs would copy the whole base per layer.
            "storage-driver": os.environ.get("MIRROR_TEST_STORAGE_DRIVER", "overlay2"),
            "iptables": False,
            "ip6tables": False,
            "bridge": "none",
            "data-root": str(r / "data"),
            "exec-root": str(r / "exec"),
            "pidfile": str(r / "docker.pid"),
            "hosts": [f"unix://{self.socket}"],
            "deprecated-key-path": str(r / "key.json"),
        }

    def import_base(self, tarball: Path, tag: str = BASE_TAG) -> None:
        """`docker import` as the docs say: an image with no config (not even ENV PATH)."""
        self.docker("import", str(tarball), tag, timeout=IMPORT_TIMEOUT)

    def build(
        self,
        context: Path,
        tag: str,
        build_args: dict[str, str],
        *,
        buildkit: bool = False,
        extra: Sequence[str] = (),
    ) -> str:
        """`docker build --network none`; returns its output (raises ClientError on failure)."""
        args = [f"--build-arg={key}={value}" for key, value in build_args.items()]
        argv = self.sandbox.cmd(
            DOCKER_CLI, "-H", f"unix://{self.socket}", "build", "--network", "none"
        )
        argv += ["--tag", tag, *args, *extra, str(context)]
        env = {**self.env, "DOCKER_BUILDKIT": "1" if buildkit else "0"}
        if buildkit:
            env["BUILDKIT_PROGRESS"] = "plain"
        proc = run(argv, timeout=BUILD_TIMEOUT, env=env)
        return proc.stdout + proc.stderr
