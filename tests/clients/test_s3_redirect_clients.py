"""dockerd, containerd and podman pull through a mirror on the S3 backend with `redirect = true`.

A blob the mirror has stored is answered `307` to a presigned URL of the object, which names the
bucket's endpoint exactly as configured (`http://127.0.0.1:<S3 port>`): the client must reach
that address itself. The session's SeaweedFS runs in the host's namespace, so the sandbox gets
a forward of that very address:port into its `lo`, beside the mirror's (the sandbox still
reaches nothing else). Both forwards count the bytes they pass (forward.py `--tally`).

Each test pulls the client images cold through one client (the mirror fills from the upstream
and streams: no redirect yet), then warm through a fresh one, and checks what a user would: the
pull works and the images are the pushed ones (digests, image IDs: the clients' own checks), the
upstream saw nothing, every blob GET the mirror answered was a 307 with no body, the mirror sent
no blob bytes (`mirror_served_bytes_total`), and at least every blob's bytes came through the
bucket's forward (redirect_watch.py). The last test takes the bucket's forward away: the
clients then cannot pull at all, which is what `redirect = true` needs operators to know.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.images import Image
from support.mirror_process import MirrorProcess, MirrorProcesses, process_config
from support.procs import keep_log
from support.registry import Registry
from support.s3server import S3Server

from . import test_containerd, test_dockerd, test_podman
from .checks import all_blobs, assert_cold_pull, assert_mirror_log_clean, assert_warm_pull
from .conftest import ContainerdFactory, DockerdFactory, PodmanFactory
from .daemons import ClientError
from .netns import Sandbox
from .redirect_watch import Forwards, Watch, assert_served_by_the_bucket, blob_sizes, report

UNREACHABLE = "bucket unreachable"  # the mirror fixture's parameter: no forward to the bucket


@pytest.fixture
def bucket(seaweedfs: S3Server) -> str:
    name = f"mirror-{uuid.uuid4().hex[:12]}"
    seaweedfs.create_bucket(name)
    return name


@pytest.fixture
def forwards(tmp_path: Path, seaweedfs: S3Server) -> Forwards:
    mirror, bucket = tmp_path / "mirror-forward.json", tmp_path / "bucket-forward.json"
    return Forwards(mirror, bucket, seaweedfs.s3_port)


@pytest.fixture
def mirror(
    registry: Registry,
    hub_images: dict[str, Image],
    sandbox: Sandbox,
    mirror_processes: MirrorProcesses,
    seaweedfs: S3Server,
    bucket: str,
    forwards: Forwards,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> MirrorProcess:
    """A fresh mirror with its blobs in `bucket` and `redirect = true` (the make_* fixtures of
    conftest.py take this one). The sandbox reaches it and the bucket's S3 port, each at the
    address:port the host uses, since presigned URLs carry the endpoint as configured. With
    indirect parametrization UNREACHABLE, the bucket is not forwarded."""
    keep_log(request, "upstream registry log", registry.log_path)
    keep_log(request, "SeaweedFS log", seaweedfs.log_path)
    config: dict[str, Any] = process_config(registry.url, tmp_path / "s3-mirror-data")
    config["storage"]["backend"] = "s3"
    config["storage.s3"] = {
        "endpoint": seaweedfs.endpoint,
        "bucket": bucket,
        "access_key": seaweedfs.access_key,
        "secret_key": seaweedfs.secret_key,
        "redirect": True,
    }
    proc = mirror_processes(config=config)
    sandbox.forward(proc.port, proc.host, tally=forwards.mirror)
    if getattr(request, "param", None) != UNREACHABLE:
        s3_host = seaweedfs.endpoint.removeprefix("http://")
        sandbox.forward(seaweedfs.s3_port, s3_host, tally=forwards.bucket)
    return proc


@pytest.fixture
def watch(registry: Registry, mirror: MirrorProcess, forwards: Forwards) -> Watch:
    return Watch(registry, mirror, forwards)


def cold_then_warm(
    client: str,
    cold: Callable[[], None],
    warm: Callable[[], None],
    watch: Watch,
    seaweedfs: S3Server,
    bucket: str,
    images: dict[str, Image],
) -> None:
    """`cold` pulls every image through one client, `warm` through a fresh one."""
    mark, started = watch.mark(), time.monotonic()
    cold()
    window = watch.since(mark)
    report(f"{client}, S3 redirect, cold pull", time.monotonic() - started, window)
    assert_cold_pull(window.upstream, images.values())
    sizes = blob_sizes(seaweedfs, bucket, all_blobs(images.values()))

    mark, started = watch.mark(), time.monotonic()
    warm()
    window = watch.since(mark)
    report(f"{client}, S3 redirect, warm pull", time.monotonic() - started, window)
    assert_warm_pull(window.upstream)
    assert_served_by_the_bucket(window, sizes)
    assert_mirror_log_clean(watch.mirror.stderr_path)


def test_dockerd_follows_the_redirect_to_the_bucket(
    make_dockerd: DockerdFactory,
    watch: Watch,
    seaweedfs: S3Server,
    bucket: str,
    hub_images: dict[str, Image],
) -> None:
    def cold() -> None:
        first = make_dockerd()
        test_dockerd.pull_and_check(first, hub_images, "cold pull, S3 with redirect")
        first.stop()

    def warm() -> None:
        test_dockerd.pull_and_check(make_dockerd(), hub_images, "warm pull, S3 with redirect")

    cold_then_warm("dockerd", cold, warm, watch, seaweedfs, bucket, hub_images)


def test_containerd_follows_the_redirect_to_the_bucket(
    make_containerd: ContainerdFactory,
    mirror: MirrorProcess,
    watch: Watch,
    seaweedfs: S3Server,
    bucket: str,
    hub_images: dict[str, Image],
) -> None:
    def cold() -> None:
        first = make_containerd()
        test_containerd.pull_and_check(first, mirror, hub_images, "cold pull, S3 with redirect")
        first.stop()

    def warm() -> None:
        second = make_containerd()
        test_containerd.pull_and_check(second, mirror, hub_images, "warm pull, S3 with redirect")

    cold_then_warm("containerd", cold, warm, watch, seaweedfs, bucket, hub_images)


def test_podman_follows_the_redirect_to_the_bucket(
    make_podman: PodmanFactory,
    watch: Watch,
    seaweedfs: S3Server,
    bucket: str,
    hub_images: dict[str, Image],
) -> None:
    def pull(when: str) -> Callable[[], None]:
        return lambda: test_podman.pull_and_check(make_podman(), hub_images, when)

    cold, warm = pull("cold pull, S3 with redirect"), pull("warm pull, S3 with redirect")
    cold_then_warm("podman", cold, warm, watch, seaweedfs, bucket, hub_images)


@pytest.mark.parametrize("mirror", [UNREACHABLE], indirect=True)
def test_clients_that_cannot_reach_the_bucket_fail_the_pull(
    make_dockerd: DockerdFactory,
    make_containerd: ContainerdFactory,
    mirror: MirrorProcess,
    watch: Watch,
    seaweedfs: S3Server,
    bucket: str,
    hub_images: dict[str, Image],
) -> None:
    """The same mirror, but the sandbox has no way to the bucket's port: what `redirect = true`
    does to clients that cannot reach the endpoint as configured. The images are stored by a
    cold pull (streamed from the fill: no redirect yet); then no client can pull them."""
    image = hub_images["alpine:3.19"]  # no blob shared with another image: all cold, all 200
    first = make_dockerd()
    test_dockerd.pull_and_check(first, {image.name: image}, "cold pull, bucket unreachable")
    first.stop()
    blob_sizes(seaweedfs, bucket, all_blobs([image]))  # stored: hits are redirected from now

    mark = watch.mark()
    second = make_dockerd()
    with pytest.raises(ClientError):
        second.pull(image.name)
    # Not through the mirror: dockerd gave up on it and tried Docker Hub itself (the sandbox
    # has no route there; a node would have one, and pull without the cache).
    log = second.log.read_text(errors="replace")
    assert f"dial tcp 127.0.0.1:{watch.forwards.bucket_port}" in log, "no try at the bucket"
    assert "https://registry-1.docker.io/v2/" in log, "dockerd did not try Docker Hub"
    containerd = make_containerd()
    with pytest.raises(ClientError, match="connection refused") as refused:
        containerd.pull(image.docker_io, containerd.write_hosts(mirror.url))
    assert f"127.0.0.1:{watch.forwards.bucket_port}" in str(refused.value)
    window = watch.since(mark)
    assert window.blob_gets and {status for _, status, _ in window.blob_gets} == {307}
    assert window.served == 0 and not window.upstream
