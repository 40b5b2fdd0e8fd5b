"""The Dockerfile, built and run for real: offline, non-root, healthy, TLS, a pull through it.

No base image can be pulled here. The base is Debian bookworm made by mmdebstrap and `docker
import`ed as mirror-test-base:bookworm (tests/clients/image_build.py; cached under
/var/tmp/mirror-test-cache), passed as `--build-arg PYTHON_IMAGE`; pip installs from a wheelhouse
in the build context. dockerd runs in a Sandbox (a network namespace with only `lo`, as the client
tests do) and builds with `--network none`: a step that needed a registry or the package index
fails. The container runs with the sandbox's network (`--network host`), the upstream registry
forwarded onto its loopback, and skopeo pulls through it over TLS with the test CA.

The classic builder and BuildKit's built-in frontend (dockerd 20.10, no buildx) both build it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from clients.daemons import DOCKER_CLI, DOCKERD, ClientError, Containerd
from clients.image_build import BASE_TAG, BuildDockerd, base_tarball, build_context, wheelhouse
from clients.netns import Sandbox, SandboxError
from support.images import PLAN
from support.mirror_process import toml_text
from support.poll import wait_until
from support.procs import in_ci, keep_log, need
from support.registry import Registry
from support.skopeo import Skopeo, diff_dirs

pytestmark = pytest.mark.timeout(600)  # a cold build makes its Debian base first (~1 min)

WHY = "the image test needs docker.io, containerd, mmdebstrap, iproute2 (root)"
IMAGE = "mirror:test"
UID = 10001
PULL_PORT, ADMIN_PORT = 5000, 5001  # the image's; free in the sandbox, which has its own lo
PULLED = ("alpine:3.19", "test/oci:v1")
HEALTHY_WITHIN = 60.0

# Runs inside the sandbox: the status of GET argv[1], trusting the CA file argv[2] if given.
STATUS = """
import ssl, sys, urllib.error, urllib.request
context = ssl.create_default_context(cafile=sys.argv[2]) if len(sys.argv) > 2 else None
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5, context=context).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""


@dataclass
class Builder:
    """The sandbox, its dockerd (base imported), and how long each step took."""

    sandbox: Sandbox
    docker: BuildDockerd
    context: Path
    logs: list[tuple[str, Path]]
    timings: dict[str, float] = field(default_factory=dict)


def _timed(timings: dict[str, float], what: str, start: float) -> None:
    timings[what] = round(time.monotonic() - start, 1)


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builder]:
    need("unshare", "nsenter", "ip", "timeout", "mmdebstrap", why=WHY)
    need(DOCKERD, "containerd", DOCKER_CLI, why=WHY)
    if os.geteuid() != 0:
        if in_ci():
            pytest.fail("the image test runs as root (mmdebstrap, a network namespace)")
        pytest.skip("the image test runs as root (mmdebstrap, a network namespace)")
    logs_dir = tmp_path_factory.mktemp("image")
    timings: dict[str, float] = {}
    start = time.monotonic()
    tarball = base_tarball()
    _timed(timings, "base tarball", start)
    start = time.monotonic()
    wheels = wheelhouse()
    _timed(timings, "wheelhouse", start)
    context = build_context(logs_dir / "context", wheels)
    box = Sandbox(logs_dir)
    try:
        box.start()
    except (SandboxError, OSError) as exc:
        box.close()
        if in_ci():
            pytest.fail(f"cannot make a network namespace: {exc}; CI=true", pytrace=False)
        pytest.skip(f"cannot make a network namespace here: {exc}")
    # Unix socket paths must stay under 108 bytes: daemon state in a short folder.
    state = Path(tempfile.mkdtemp(prefix="mi-", dir="/tmp"))
    logs = [("containerd", logs_dir / "containerd.log"), ("dockerd", logs_dir / "dockerd.log")]
    containerd = Containerd(box, state / "containerd", logs[0][1])
    docker = BuildDockerd(box, state / "dockerd", logs[1][1], containerd.address)
    try:
        containerd.start()
        docker.start()
        start = time.monotonic()
        docker.import_base(tarball)
        _timed(timings, "docker import", start)
        yield Builder(box, docker, context, logs, timings)
    finally:
        print(f"\nimage test timings (s): {json.dumps(timings)}")
        docker.stop()
        containerd.stop()
        box.close()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(autouse=True)
def daemon_logs(request: pytest.FixtureRequest) -> None:
    if "builder" in request.fixturenames:
        for label, path in request.getfixturevalue("builder").logs:
            keep_log(request, label, path)


def build(builder: Builder, tag: str, *, buildkit: bool) -> str:
    start = time.monotonic()
    args = {"PYTHON_IMAGE": BASE_TAG}
    try:
        output = builder.docker.build(builder.context, tag, args, buildkit=buildkit)
    except ClientError as exc:
        pytest.fail(f"docker build ({'BuildKit' if buildkit else 'classic'}) failed: {exc}")
    _timed(builder.timings, f"build {tag}", start)
    return output


@pytest.fixture(scope="module")
def image(builder: Builder) -> str:
    """The image, built by the classic builder (dockerd 20.10's default without buildx)."""
    build(builder, IMAGE, buildkit=False)
    return IMAGE


def inspect(builder: Builder, *args: str) -> dict[str, object]:
    docs = json.loads(builder.docker.docker("inspect", *args))
    assert isinstance(docs, list) and len(docs) == 1
    doc: dict[str, object] = docs[0]
    return doc


def shell(builder: Builder, image: str, script: str) -> str:
    """`sh -c script` in a throwaway container of `image`, with no network."""
    return builder.docker.docker(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", script
    )


# -- the image as built ---------------------------------------------------------------------


def test_image_is_non_root_and_carries_no_build_leftovers(builder: Builder, image: str) -> None:
    config = inspect(builder, "--type", "image", image)["Config"]
    assert isinstance(config, dict)
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["mirror"]
    assert config["Cmd"] == ["serve", "--config", "/etc/mirror/config.toml"]
    assert set(config["ExposedPorts"]) == {f"{PULL_PORT}/tcp", f"{ADMIN_PORT}/tcp"}
    assert set(config["Volumes"]) == {"/var/lib/mirror"}
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python"]
    # The venv runs on the base's own interpreter; no source tree, wheels or pip made it in.
    out = shell(
        builder,
        image,
        "id -u; stat -c '%u %a' /var/lib/mirror; readlink -f /opt/mirror/bin/python;"
        " ls /src /wheels /opt/mirror/bin/pip 2>&1 | wc -l; mirror --version",
    )
    uid, data_dir, python, missing, version = out.strip().splitlines()
    assert uid == str(UID)
    assert data_dir == f"{UID} 750"
    assert python.startswith("/usr/bin/python3"), python
    assert missing == "3", "/src, /wheels or the venv's pip is in the runtime image"
    assert version.startswith("mirror ")


def test_buildkit_builds_the_same_dockerfile_offline(builder: Builder, image: str) -> None:
    """No `# syntax=` line (BuildKit would fetch that frontend from Docker Hub), no RUN --mount
    (the classic builder has none): BuildKit's built-in frontend builds it too, offline."""
    output = build(builder, "mirror:buildkit", buildkit=True)
    assert "resolve image config for docker.io/docker/dockerfile" not in output
    classic = inspect(builder, "--type", "image", image)["Config"]
    kit = inspect(builder, "--type", "image", "mirror:buildkit")["Config"]
    assert isinstance(classic, dict) and isinstance(kit, dict)
    for key in ("User", "Entrypoint", "Cmd", "Healthcheck", "ExposedPorts", "Volumes", "Env"):
        assert kit[key] == classic[key], key
    assert shell(builder, "mirror:buildkit", "mirror --version").startswith("mirror ")


# -- the image running ----------------------------------------------------------------------


def write_tls(ca: trustme.CA, folder: Path) -> Path:
    """cert.pem (with its chain) and key.pem for 127.0.0.1, readable by the image's user only;
    returns the CA's file for clients."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    folder.mkdir(parents=True)
    (folder / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key = folder / "key.pem"
    key.write_bytes(leaf.private_key_pem.bytes())
    os.chown(key, UID, UID)
    key.chmod(0o600)
    folder.chmod(0o755)
    ca_file = folder.parent / "ca.crt"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca_file


def status(builder: Builder, url: str, ca_file: Path | None = None) -> int:
    argv = [sys.executable, "-c", STATUS, url] + ([str(ca_file)] if ca_file else [])
    return int(builder.sandbox.run(*argv).strip())


def health(builder: Builder, name: str) -> dict[str, object]:
    state = inspect(builder, "--type", "container", name)["State"]
    assert isinstance(state, dict)
    result: dict[str, object] = state.get("Health") or {}
    return result


def skopeo_in_sandbox(builder: Builder, work: Path, *args: str) -> None:
    """skopeo inside the sandbox, with no registries.conf of the host's."""
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    conf = work / "registries.conf"
    conf.write_text("# empty: every registry is named by host:port\n")
    argv = ["env", f"CONTAINERS_REGISTRIES_CONF={conf}", "skopeo", "--insecure-policy"]
    argv += ["--command-timeout=120s", *args]
    builder.sandbox.run(*argv, timeout=150)


def test_container_serves_tls_pulls_and_admin_as_non_root(
    builder: Builder,
    image: str,
    registry: Registry,
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    need("skopeo", why=WHY)
    # The upstream (in the host's namespace) onto the sandbox's loopback, same port.
    builder.sandbox.forward(registry.port, registry.host)
    ca = trustme.CA()
    ca_file = write_tls(ca, tmp_path / "tls")
    config = {
        "server": {
            "listen": f"0.0.0.0:{PULL_PORT}",
            "tls_cert": "/etc/mirror/tls/cert.pem",
            "tls_key": "/etc/mirror/tls/key.pem",
        },
        "storage": {"path": "/var/lib/mirror"},
        "admin": {"listen": f"0.0.0.0:{ADMIN_PORT}"},
        "upstreams": [{"name": "docker.io", "url": registry.url}],
    }
    config_file = tmp_path / "config.toml"
    config_file.write_text(toml_text(config))
    config_file.chmod(0o644)
    name = "mirror-under-test"
    builder.docker.docker(
        "run",
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "--health-interval",
        "1s",
        "--volume",
        f"{config_file}:/etc/mirror/config.toml:ro",
        "--volume",
        f"{tmp_path / 'tls'}:/etc/mirror/tls:ro",
        image,
    )
    try:
        check_running_container(builder, name, ca_file, registry, skopeo, tmp_path)
    except BaseException:
        logs = builder.docker.docker("logs", "--tail", "40", name)
        print(f"the container's log:\n{logs}")
        raise
    finally:
        builder.docker.docker("rm", "--force", "--volumes", name)


def check_running_container(
    builder: Builder,
    name: str,
    ca_file: Path,
    registry: Registry,
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    # Its HEALTHCHECK (the image's, on the admin port) passes.
    def healthy() -> bool:
        state = health(builder, name)
        if state.get("Status") == "unhealthy":  # its probe failed --health-retries times
            log = state.get("Log")
            last = log[-1] if isinstance(log, list) and log else {}
            raise AssertionError(f"the container is unhealthy; its probe's last run: {last}")
        return state.get("Status") == "healthy"

    wait_until(healthy, within=HEALTHY_WITHIN, interval=0.5, what="the container healthy")
    # The server itself (PID 1) runs as the image's user, not root.
    proc_status = builder.docker.docker("exec", name, "cat", "/proc/1/status")
    uids = next(line for line in proc_status.splitlines() if line.startswith("Uid:"))
    assert uids.split()[1:] == [str(UID)] * 4, uids
    assert builder.docker.docker("exec", name, "id", "-u").strip() == str(UID)

    # The admin port answers the probes; the pull port (TLS) does not serve /metrics.
    admin = f"http://127.0.0.1:{ADMIN_PORT}"
    pull = f"https://127.0.0.1:{PULL_PORT}"
    assert status(builder, f"{admin}/healthz") == 200
    assert status(builder, f"{admin}/metrics") == 200
    assert status(builder, f"{pull}/v2/", ca_file) == 200
    assert status(builder, f"{pull}/metrics", ca_file) == 404

    # skopeo, trusting the test CA only, pulls through the container: byte-identical to a
    # direct pull from the upstream.
    certs = tmp_path / "certs.d"
    certs.mkdir()
    shutil.copy(ca_file, certs / "ca.crt")
    for pulled in PULLED:
        _, repo, tag, _, _ = PLAN[pulled]
        ref = f"{repo}:{tag}"
        direct = skopeo.pull(registry.host, ref, tmp_path / "direct" / repo, all_platforms=True)
        through = tmp_path / "through" / repo
        through.parent.mkdir(parents=True, exist_ok=True)
        skopeo_in_sandbox(
            builder,
            tmp_path / "skopeo",
            "copy",
            "--quiet",
            "--all",
            "--src-no-creds",
            f"--src-cert-dir={certs}",
            f"--tmpdir={tmp_path / 'skopeo' / 'tmp'}",
            f"docker://127.0.0.1:{PULL_PORT}/{ref}",
            f"dir:{through}",
        )
        assert diff_dirs(direct, through) == [], f"{ref} through the container"
    # It cached them on its volume, as its own user.
    owners = builder.docker.docker("exec", name, "find", "/var/lib/mirror", "!", "-user", str(UID))
    assert owners.strip() == "", f"files not owned by {UID}:\n{owners}"
    assert health(builder, name).get("Status") == "healthy"
