"""Blob throughput through the mirror with the filesystem backend and with the S3 backend.

    .venv/bin/python bench/s3_backend.py --upstream http://127.0.0.1:17000 \\
        --repo bench/big --digest sha256:... [--runs 3]

Starts SeaweedFS (the tests' fixture) and mirror processes on free 127.0.0.1 ports in front of
`--upstream` (a registry that holds the blob: shared/perf's setup.sh pushes a 256 MiB one), and
fetches the blob with curl: cold (a fresh data folder and, for S3, a fresh bucket, each run) and
warm (best of --runs); the bucket read directly (curl on a presigned URL); and, with
redirect = true, how long the mirror takes to answer its 307 (median of 50).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.mirror_process import MirrorProcess, process_config
from support.seaweedfs import SeaweedFS

MB = 1_000_000


def curl(url: str, *extra: str) -> tuple[float, int, int]:
    """(seconds, bytes, status) of one GET by curl."""
    out = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{time_total} %{size_download} %{http_code}",
            *list(extra),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[1]), int(out[2])


class Bench:
    def __init__(self, args: argparse.Namespace, root: Path, s3: SeaweedFS) -> None:
        self.args = args
        self.root = root
        self.s3 = s3
        self.count = 0

    def mirror(self, backend: str, redirect: bool = False) -> MirrorProcess:
        self.count += 1
        folder = self.root / f"m{self.count}"
        config: dict[str, Any] = process_config(self.args.upstream, folder / "data")
        if backend == "s3":
            bucket = f"bench-{uuid.uuid4().hex[:10]}"
            self.s3.create_bucket(bucket)
            config["storage"]["backend"] = "s3"
            config["storage.s3"] = {
                "endpoint": self.s3.endpoint,
                "bucket": bucket,
                "access_key": self.s3.access_key,
                "secret_key": self.s3.secret_key,
                "redirect": redirect,
            }
        mirror = MirrorProcess(folder, config)
        mirror.start()
        return mirror

    def url(self, mirror: MirrorProcess) -> str:
        return f"{mirror.url}/v2/{self.args.repo}/blobs/{self.args.digest}"

    def cold_and_warm(self, label: str, backend: str, redirect: bool = False) -> None:
        colds, warms = [], []
        for _ in range(self.args.runs):
            mirror = self.mirror(backend, redirect)
            try:
                seconds, size, _ = curl(self.url(mirror), "-L")
                colds.append(size / seconds / MB)
                for _ in range(self.args.runs):
                    seconds, size, _ = curl(self.url(mirror), "-L")
                    warms.append(size / seconds / MB)
                if redirect:
                    self.redirect_latency(mirror)
                if backend == "s3" and not redirect:
                    self.direct(mirror)
            finally:
                mirror.stop()
        print(f"{label:<28} cold {max(colds):7.0f} MB/s   warm {max(warms):7.0f} MB/s")

    def redirect_latency(self, mirror: MirrorProcess) -> None:
        """The 307 (a HEAD of the object, a presigned URL) against a HEAD of the blob, which the
        mirror answers from its index alone: the difference is what redirecting adds."""
        url = self.url(mirror)
        redirects = [curl(url)[0] * 1000 for _ in range(50)]
        heads = [curl(url, "-I")[0] * 1000 for _ in range(50)]
        assert curl(url)[2] == 307
        print(
            f"{'  307 answer':<28} median {statistics.median(redirects):.2f} ms"
            f" (HEAD from the index: {statistics.median(heads):.2f} ms)"
        )

    def direct(self, mirror: MirrorProcess) -> None:
        """The same object read straight from the bucket (curl on a presigned URL)."""
        bucket = mirror.config["storage.s3"]["bucket"]
        key = f"blobs/sha256/{self.args.digest.split(':', 1)[1]}"
        url = self.s3.client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600
        )
        best = max(size / seconds / MB for seconds, size, _ in (curl(url) for _ in range(3)))
        print(f"{'  bucket read directly':<28} {best:7.0f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--digest", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["filesystem", "s3", "redirect"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        s3 = SeaweedFS(root / "seaweedfs")
        s3.start()
        try:
            bench = Bench(args, root, s3)
            if args.only in (None, "filesystem"):
                bench.cold_and_warm("filesystem", "filesystem")
            if args.only in (None, "s3"):
                bench.cold_and_warm("s3, streamed", "s3")
            if args.only in (None, "redirect"):
                bench.cold_and_warm("s3, redirect (curl -L)", "s3", redirect=True)
        finally:
            s3.stop()


if __name__ == "__main__":
    main()
