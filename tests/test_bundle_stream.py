"""Export streams: a 256 MiB layer passes through `mirror export` (and the mirror) without
either process holding it in memory."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import urllib.request
from pathlib import Path

from support.bundles import member_offsets, mirror_cli
from support.mirror_process import MirrorProcesses
from support.procs import subprocess_env
from support.registry import Registry

MiB = 1024 * 1024
LAYER_SIZE = 256 * MiB
RSS_BOUND = 96 * MiB  # the interpreter and its imports are ~40 MiB; the layer is 256
REPO = "big/stream"
MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(code)
"""


def upload(registry: Registry, path: Path, digest: str) -> None:
    """A monolithic blob upload, the body streamed from the file."""
    start = urllib.request.Request(f"{registry.url}/v2/{REPO}/blobs/uploads/", method="POST")
    with urllib.request.urlopen(start, timeout=30) as response:
        location = response.headers["Location"]
    if location.startswith("/"):
        location = registry.url + location
    separator = "&" if "?" in location else "?"
    with path.open("rb") as body:
        put = urllib.request.Request(
            f"{location}{separator}digest={digest}",
            data=body,
            method="PUT",
            headers={
                "Content-Length": str(path.stat().st_size),
                "Content-Type": "application/octet-stream",
            },
        )
        with urllib.request.urlopen(put, timeout=120) as response:
            assert response.status == 201


def push_big_image(registry: Registry, root: Path) -> tuple[str, int]:
    """An image with one 256 MiB layer (random bytes: the registry stores what it is given);
    the layer's digest and size."""
    rng = random.Random(256)
    layer, hasher = root / "layer.bin", hashlib.sha256()
    with layer.open("wb") as out:
        for _ in range(LAYER_SIZE // MiB):
            chunk = rng.randbytes(MiB)
            hasher.update(chunk)
            out.write(chunk)
    layer_digest = f"sha256:{hasher.hexdigest()}"
    upload(registry, layer, layer_digest)
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {}}).encode()
    (root / "config.json").write_bytes(config)
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    upload(registry, root / "config.json", config_digest)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": len(config),
        },
        "layers": [
            {
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": LAYER_SIZE,
            }
        ],
    }
    put = urllib.request.Request(
        f"{registry.url}/v2/{REPO}/manifests/v1",
        data=json.dumps(manifest).encode(),
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with urllib.request.urlopen(put, timeout=30) as response:
        assert response.status == 201
    layer.unlink()
    return layer_digest, LAYER_SIZE


def peak_rss_of_process(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for {pid}")


def test_export_of_a_large_layer_streams(
    registry: Registry, mirror_processes: MirrorProcesses, tmp_path: Path
) -> None:
    digest, size = push_big_image(registry, tmp_path)
    outside = mirror_processes(registry.url)
    (tmp_path / "images.txt").write_text(f"{REPO}:v1\n")
    lock = tmp_path / "images.lock"
    run = mirror_cli("lock", str(tmp_path / "images.txt"), "-o", str(lock), "--server", outside.url)
    assert run.returncode == 0, run.stderr

    bundle = tmp_path / "bundle.tar"
    export = [sys.executable, "-m", "mirror", "export", "--lock", str(lock), "-o", str(bundle)]
    # Measured from a small parent of its own: a child's ru_maxrss also counts the memory of
    # the process it was forked from, and this test process is large.
    measure = [sys.executable, "-c", MEASURE, *export, "--server", outside.url]
    run_export = subprocess.run(measure, env=subprocess_env(), capture_output=True, check=False)
    assert run_export.returncode == 0, run_export.stderr.decode()
    export_peak = int(run_export.stdout.decode().split()[-1]) * 1024  # KiB on Linux
    assert export_peak < RSS_BOUND, f"mirror export peaked at {export_peak / MiB:.0f} MiB"
    mirror_peak = peak_rss_of_process(outside.pid)
    assert mirror_peak < RSS_BOUND, f"the mirror peaked at {mirror_peak / MiB:.0f} MiB"

    name = f"blobs/sha256/{digest.removeprefix('sha256:')}"
    assert member_offsets(bundle)[name][1] == size
