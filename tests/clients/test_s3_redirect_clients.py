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
bucket's forward.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.images import Image
from support.mirror_process import MirrorProcess, MirrorProcesses, process_config
from support.procs import keep_log
from support.registry import Registry, Request
from support.seaweedfs import SeaweedFS

from . import test_containerd, test_dockerd, test_podman
from .checks import all_blobs, assert_cold_pull, assert_mirror_log_clean, assert_warm_pull
from .conftest import ContainerdFactory, DockerdFactory, PodmanFactory
from .netns import Sandbox

# The mirror's access line for a blob GET (mirror/web/access_log.py): "GET PATH STATUS NB …".
BLOB_GET = re.compile(r"\bGET /v2/\S+/blobs/(sha256:[0-9a-f]{64}) (\d{3}) (\d+)B ")
SERVED_BYTES = re.compile(r"^mirror_served_bytes_total\{[^}]*\} (\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Forwards:
    """The tally files of the sandbox's two forwards (forward.py)."""

    mirror: Path
    bucket: Path


def tally(path: Path) -> dict[str, int]:
    if not path.exists():  # written on the first connection
        return {"connections": 0, "up": 0, "down": 0}
    counts: dict[str, int] = json.loads(path.read_text())
    return counts


def served_bytes(mirror: MirrorProcess) -> float:
    """Blob bytes the mirror sent to clients so far, from its own /metrics."""
    with urllib.request.urlopen(f"{mirror.url}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return sum(float(value) for value in SERVED_BYTES.findall(text))


@dataclass(frozen=True, slots=True)
class Mark:
    upstream: int
    log_offset: int
    served: float
    mirror: dict[str, int]
    bucket: dict[str, int]


@dataclass(frozen=True, slots=True)
class Window:
    """What one pull did: upstream requests, the mirror's blob GETs (digest, status, body
    bytes), blob bytes the mirror served, and bytes down each forward into the sandbox."""

    upstream: list[Request]
    blob_gets: list[tuple[str, int, int]]
    served: float
    mirror_down: int
    bucket_down: int
    bucket_connections: int


class Watch:
    """Marks before a pull; what happened since, after it (every source is cumulative)."""

    def __init__(self, registry: Registry, mirror: MirrorProcess, forwards: Forwards) -> None:
        self.registry = registry
        self.mirror = mirror
        self.forwards = forwards

    def mark(self) -> Mark:
        log = self.mirror.stderr_path
        return Mark(
            upstream=self.registry.mark(),
            log_offset=log.stat().st_size if log.exists() else 0,
            served=served_bytes(self.mirror),
            mirror=tally(self.forwards.mirror),
            bucket=tally(self.forwards.bucket),
        )

    def since(self, mark: Mark) -> Window:
        with self.mirror.stderr_path.open("rb") as log:
            log.seek(mark.log_offset)
            lines = log.read().decode(errors="replace")
        mirror, bucket = tally(self.forwards.mirror), tally(self.forwards.bucket)
        return Window(
            upstream=self.registry.requests_since(mark.upstream),
            blob_gets=[(d, int(s), int(n)) for d, s, n in BLOB_GET.findall(lines)],
            served=served_bytes(self.mirror) - mark.served,
            mirror_down=mirror["down"] - mark.mirror["down"],
            bucket_down=bucket["down"] - mark.bucket["down"],
            bucket_connections=bucket["connections"] - mark.bucket["connections"],
        )


def blob_sizes(seaweedfs: SeaweedFS, bucket: str, digests: Iterable[str]) -> dict[str, int]:
    """Each blob's size, as its object in the bucket; every blob must be there."""
    stored = seaweedfs.objects(bucket, "blobs/")
    keys = {digest: f"blobs/sha256/{digest.split(':', 1)[1]}" for digest in digests}
    missing = sorted(d for d, key in keys.items() if key not in stored)
    assert not missing, f"blobs not in the bucket after the cold pull: {missing}"
    return {digest: stored[key] for digest, key in keys.items()}


def report(what: str, seconds: float, window: Window) -> None:
    """The figures for the report (`pytest -s`)."""
    redirects = sum(1 for _, status, _ in window.blob_gets if status == 307)
    print(
        f"\n{what}: {seconds:.1f}s; mirror blob GETs {len(window.blob_gets)} ({redirects} 307s);"
        f" blob bytes served by the mirror {window.served:.0f};"
        f" bytes down the mirror's forward {window.mirror_down},"
        f" the bucket's {window.bucket_down} in {window.bucket_connections} connections;"
        f" upstream requests {len(window.upstream)}"
    )


def assert_served_by_the_bucket(window: Window, sizes: dict[str, int]) -> None:
    """Every blob was asked of the mirror, answered 307 without a body, and fetched from the
    bucket: the mirror sent no blob bytes, and the bucket's forward carried at least them all."""
    not_redirected = [get for get in window.blob_gets if get[1] != 307 or get[2] != 0]
    assert not not_redirected, f"blob GETs not answered by a bare 307: {not_redirected}"
    never_asked = set(sizes) - {digest for digest, _, _ in window.blob_gets}
    assert not never_asked, f"blobs the client never asked the mirror for: {never_asked}"
    assert window.served == 0, f"the mirror sent {window.served} blob bytes itself"
    assert window.bucket_down >= sum(sizes.values()), (
        f"{window.bucket_down} bytes came from the bucket, the blobs are {sum(sizes.values())}"
    )


@pytest.fixture
def bucket(seaweedfs: SeaweedFS) -> str:
    name = f"mirror-{uuid.uuid4().hex[:12]}"
    seaweedfs.create_bucket(name)
    return name


@pytest.fixture
def forwards(tmp_path: Path) -> Forwards:
    return Forwards(tmp_path / "mirror-forward.json", tmp_path / "bucket-forward.json")


@pytest.fixture
def mirror(
    registry: Registry,
    hub_images: dict[str, Image],
    sandbox: Sandbox,
    mirror_processes: MirrorProcesses,
    seaweedfs: SeaweedFS,
    bucket: str,
    forwards: Forwards,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> MirrorProcess:
    """A fresh mirror with its blobs in `bucket` and `redirect = true` (the make_* fixtures of
    conftest.py take this one). The sandbox reaches it and the bucket's S3 port, each at the
    address:port the host uses, since presigned URLs carry the endpoint as configured."""
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
    s3_host = seaweedfs.endpoint.removeprefix("http://")
    sandbox.forward(seaweedfs.s3_port, s3_host, tally=forwards.bucket)
    return proc


@pytest.fixture
def watch(registry: Registry, mirror: MirrorProcess, forwards: Forwards) -> Watch:
    return Watch(registry, mirror, forwards)


def test_dockerd_follows_the_redirect_to_the_bucket(
    make_dockerd: DockerdFactory,
    mirror: MirrorProcess,
    watch: Watch,
    seaweedfs: SeaweedFS,
    bucket: str,
    hub_images: dict[str, Image],
) -> None:
    first = make_dockerd()
    mark, started = watch.mark(), time.monotonic()
    test_dockerd.pull_and_check(first, hub_images, "cold pull, S3 with redirect")
    cold = watch.since(mark)
    report("dockerd, S3 redirect, cold pull", time.monotonic() - started, cold)
    assert_cold_pull(cold.upstream, hub_images.values())
    sizes = blob_sizes(seaweedfs, bucket, all_blobs(hub_images.values()))
    first.stop()

    second = make_dockerd()
    mark, started = watch.mark(), time.monotonic()
    test_dockerd.pull_and_check(second, hub_images, "warm pull, S3 with redirect")
    warm = watch.since(mark)
    report("dockerd, S3 redirect, warm pull", time.monotonic() - started, warm)
    assert_warm_pull(warm.upstream)
    assert_served_by_the_bucket(warm, sizes)
    assert_mirror_log_clean(mirror.stderr_path)


def test_containerd_follows_the_redirect_to_the_bucket(
    make_containerd: ContainerdFactory,
    mirror: MirrorProcess,
    watch: Watch,
    seaweedfs: SeaweedFS,
    bucket: str,
    hub_images: dict[str, Image],
) -> None:
    first = make_containerd()
    mark, started = watch.mark(), time.monotonic()
    test_containerd.pull_and_check(first, mirror, hub_images, "cold pull, S3 with redirect")
    cold = watch.since(mark)
    report("containerd, S3 redirect, cold pull", time.monotonic() - started, cold)
    assert_cold_pull(cold.upstream, hub_images.values())
    sizes = blob_sizes(seaweedfs, bucket, all_blobs(hub_images.values()))
    first.stop()

    second = make_containerd()
    mark, started = watch.mark(), time.monotonic()
    test_containerd.pull_and_check(second, mirror, hub_images, "warm pull, S3 with redirect")
    warm = watch.since(mark)
    report("containerd, S3 redirect, warm pull", time.monotonic() - started, warm)
    assert_warm_pull(warm.upstream)
    assert_served_by_the_bucket(warm, sizes)
    assert_mirror_log_clean(mirror.stderr_path)


def test_podman_follows_the_redirect_to_the_bucket(
    make_podman: PodmanFactory,
    mirror: MirrorProcess,
    watch: Watch,
    seaweedfs: SeaweedFS,
    bucket: str,
    hub_images: dict[str, Image],
) -> None:
    mark, started = watch.mark(), time.monotonic()
    test_podman.pull_and_check(make_podman(), hub_images, "cold pull, S3 with redirect")
    cold = watch.since(mark)
    report("podman, S3 redirect, cold pull", time.monotonic() - started, cold)
    assert_cold_pull(cold.upstream, hub_images.values())
    sizes = blob_sizes(seaweedfs, bucket, all_blobs(hub_images.values()))

    mark, started = watch.mark(), time.monotonic()
    test_podman.pull_and_check(make_podman(), hub_images, "warm pull, S3 with redirect")
    warm = watch.since(mark)
    report("podman, S3 redirect, warm pull", time.monotonic() - started, warm)
    assert_warm_pull(warm.upstream)
    assert_served_by_the_bucket(warm, sizes)
    assert_mirror_log_clean(mirror.stderr_path)
