"""skopeo as the real client: copies into `dir:` layouts, raw manifests, dir comparison."""

from __future__ import annotations

import filecmp
import os
import subprocess
from pathlib import Path

from .procs import need

TIMEOUT = 120.0


class SkopeoError(RuntimeError):
    """skopeo exited non-zero; the message carries its command line and stderr."""


class Skopeo:
    """Runs skopeo isolated from host config: no registries.conf mirrors, no credentials."""

    def __init__(self, workdir: Path) -> None:
        need("skopeo")
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "registries.conf"
        conf.write_text("# empty: the tests name every registry by host:port\n")
        self.tmpdir = workdir / "tmp"
        self.tmpdir.mkdir(exist_ok=True)
        self.env = {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(conf)}

    def run(self, *args: str, timeout: float = TIMEOUT) -> bytes:
        cmd = ["skopeo", "--insecure-policy", f"--command-timeout={int(timeout)}s", *args]
        proc = subprocess.run(
            cmd, capture_output=True, env=self.env, timeout=timeout + 10, check=False
        )
        if proc.returncode != 0:
            raise SkopeoError(
                f"{' '.join(cmd)} exited {proc.returncode}:\n"
                + proc.stderr.decode(errors="replace")
            )
        return proc.stdout

    def push(
        self,
        layout: Path,
        layout_tag: str,
        host: str,
        ref: str,
        *extra: str,
        creds: tuple[str, str] | None = None,
    ) -> None:
        self.run(
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            f"--dest-creds={':'.join(creds)}" if creds else "--dest-no-creds",
            f"--tmpdir={self.tmpdir}",
            *extra,
            f"oci:{layout}:{layout_tag}",
            f"docker://{host}/{ref}",
        )

    def pull(
        self,
        host: str,
        ref: str,
        dest: Path,
        *,
        all_platforms: bool = False,
        arch: str | None = None,
    ) -> Path:
        """Copy docker://host/ref into a fresh `dir:` at dest (ref is repo:tag or repo@digest)."""
        args = ["--quiet", "--src-tls-verify=false", "--src-no-creds", f"--tmpdir={self.tmpdir}"]
        if all_platforms:
            args.append("--all")
        dest.parent.mkdir(parents=True, exist_ok=True)
        global_args = ["--override-arch", arch, "--override-os", "linux"] if arch else []
        self.run(*global_args, "copy", *args, f"docker://{host}/{ref}", f"dir:{dest}")
        return dest

    def inspect_raw(self, host: str, ref: str, *, creds: tuple[str, str] | None = None) -> bytes:
        """The manifest bytes the registry at host serves for ref."""
        login = f"--creds={':'.join(creds)}" if creds else "--no-creds"
        return self.run("inspect", "--raw", "--tls-verify=false", login, f"docker://{host}/{ref}")


def dir_files(root: Path) -> dict[str, Path]:
    """Every file of a `dir:` layout by name (skopeo names blobs by digest hex)."""
    return {p.name: p for p in sorted(root.iterdir()) if p.is_file()}


def diff_dirs(expected: Path, actual: Path) -> list[str]:
    """Human-readable differences between two `dir:` layouts; empty when byte-identical."""
    want, got = dir_files(expected), dir_files(actual)
    problems = [f"missing {name}" for name in sorted(want.keys() - got.keys())]
    problems += [f"unexpected {name}" for name in sorted(got.keys() - want.keys())]
    for name in sorted(want.keys() & got.keys()):
        if not filecmp.cmp(want[name], got[name], shallow=False):
            size_want, size_got = want[name].stat().st_size, got[name].stat().st_size
            problems.append(f"{name} differs ({size_want} bytes expected, {size_got} received)")
    if not want:
        problems.append(f"{expected} is empty")
    return problems
