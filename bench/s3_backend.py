"""Blob throughput through the mirror with the filesystem backend and with the S3 backend.

    .venv/bin/python bench/s3_backend.py --upstream http://127.0.0.1:17000 \\
        --repo bench/big --digest sha256:... [--runs 3]

Starts SeaweedFS (the tests' fixture) and mirror processes on free 127.0.0.1 ports in front of
`--upstream` (a registry that holds the blob: push a 256 MiB single-layer image to a local
`docker-registry` with skopeo first), and fetches the blob with curl. Each of --rounds rounds
starts a fresh mirror per backend (a fresh data folder and, for S3, a fresh bucket) in turn: its
cold fetch (until the client's last byte; for S3 the bench then waits for the object, whose
upload completes behind the client), then --runs warm fetches (for the streamed S3 mirror each
one after a direct read of the same object, curl on a presigned URL); with redirect = true,
also 50 times its 307, a HEAD answered from the index and a HEAD of the object straight from
the bucket (curl on a presigned URL: what the 307's check of the object costs the bucket),
alternating.
Printed: best and median per figure, and the ratios of the performance targets, each between
figures taken in the same rounds (the machine is shared: compare ratios, not absolute figures).
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
from support.poll import wait_until
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
        # label -> every figure measured under it, over all rounds
        self.figures: dict[str, list[float]] = {}

    def note(self, label: str, value: float) -> None:
        self.figures.setdefault(label, []).append(value)

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
            if redirect and self.args.redirect_memo is not None:
                config["storage.s3"]["redirect_memo"] = self.args.redirect_memo
        mirror = MirrorProcess(folder, config)
        mirror.start()
        return mirror

    def url(self, mirror: MirrorProcess) -> str:
        return f"{mirror.url}/v2/{self.args.repo}/blobs/{self.args.digest}"

    def speed(self, url: str, *extra: str) -> float:
        seconds, size, status = curl(url, *extra)
        assert status == 200, f"{url}: {status}"
        return size / seconds / MB

    def round(self, backend: str, redirect: bool = False) -> None:
        """One fresh mirror: its cold fetch, then warm fetches (for a streamed S3 mirror,
        alternating with direct reads of the same object, so both see the same noise)."""
        kind = "filesystem" if backend == "filesystem" else "redirect" if redirect else "s3"
        mirror = self.mirror(backend, redirect)
        try:
            url = self.url(mirror)
            self.note(f"{kind} cold", self.speed(url, "-L"))
            if backend == "s3":
                self.stored(mirror)
            direct = self.direct_url(mirror) if kind == "s3" else None
            for _ in range(self.args.runs):
                if direct is not None:
                    self.note("bucket direct", self.speed(direct))
                self.note(f"{kind} warm", self.speed(url, "-L"))
            if redirect:
                self.redirect_latency(url, self.direct_url(mirror, "head_object"))
        finally:
            mirror.stop()

    def stored(self, mirror: MirrorProcess) -> None:
        """Wait for the object: its upload completes after the cold fetch's last byte, and
        until then hits are sent from the replica's disk (neither streamed nor redirected)."""
        bucket = mirror.config["storage.s3"]["bucket"]
        key = f"blobs/sha256/{self.args.digest.split(':', 1)[1]}"
        wait_until(lambda: key in self.s3.objects(bucket, "blobs/"), what=f"{key} in the bucket")
        # The local copy goes once the object is complete: hits then come from the bucket.
        wait_until(lambda: not any((mirror.data / "tmp").iterdir()), what="the local copy gone")

    def redirect_latency(self, url: str, bucket_head: str) -> None:
        """The 307 (a presigned URL of the object) against a HEAD of the blob, which the
        mirror answers from its index alone, alternating: the difference is what redirecting
        adds. And the bucket's own HEAD of the object, which the 307 waits for."""
        redirects, heads, bucket = [], [], []
        for _ in range(50):
            seconds, _, status = curl(url)
            assert status == 307, status
            redirects.append(seconds * 1000)
            heads.append(curl(url, "-I")[0] * 1000)
            seconds, _, status = curl(bucket_head, "-I")
            assert status == 200, status
            bucket.append(seconds * 1000)
        self.note("307 ms", statistics.median(redirects))
        self.note("HEAD ms", statistics.median(heads))
        self.note("bucket HEAD ms", statistics.median(bucket))

    def direct_url(self, mirror: MirrorProcess, operation: str = "get_object") -> str:
        """The same object straight from the bucket (curl on a presigned URL)."""
        bucket = mirror.config["storage.s3"]["bucket"]
        key = f"blobs/sha256/{self.args.digest.split(':', 1)[1]}"
        url: str = self.s3.client().generate_presigned_url(
            operation, Params={"Bucket": bucket, "Key": key}, ExpiresIn=600
        )
        return url

    def report(self) -> None:
        """Per label: best and median; then the ratios the performance targets are about,
        each between figures of the same rounds."""
        for label, values in self.figures.items():
            unit = "ms" if label.endswith("ms") else "MB/s"
            print(
                f"{label:<20} best {max(values) if unit == 'MB/s' else min(values):8.1f}"
                f"  median {statistics.median(values):8.1f} {unit}  (n={len(values)})"
            )
        f = {label: statistics.median(values) for label, values in self.figures.items()}
        best = {label: max(values) for label, values in self.figures.items()}
        if "s3 warm" in f and "bucket direct" in f:
            print(
                f"s3 warm / direct: best {best['s3 warm'] / best['bucket direct']:.2f}x,"
                f" median {f['s3 warm'] / f['bucket direct']:.2f}x"
            )
        if "s3 cold" in f and "filesystem cold" in f:
            print(
                f"s3 cold / filesystem cold: best {best['s3 cold'] / best['filesystem cold']:.2f}x,"
                f" median {f['s3 cold'] / f['filesystem cold']:.2f}x"
            )
        if "307 ms" in f:
            print(
                f"307 adds (median 307 - median HEAD): {f['307 ms'] - f['HEAD ms']:.2f} ms"
                f"; the bucket's own HEAD by curl (median): {f['bucket HEAD ms']:.2f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--digest", required=True)
    parser.add_argument("--runs", type=int, default=3, help="warm fetches per round")
    parser.add_argument("--redirect-memo", help='storage.s3.redirect_memo, e.g. "5s"')
    parser.add_argument("--rounds", type=int, default=3, help="fresh mirrors per backend")
    parser.add_argument(
        "--only", action="append", choices=["filesystem", "s3", "redirect"], help="repeatable"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        s3 = SeaweedFS(root / "seaweedfs")
        s3.start()
        try:
            bench = Bench(args, root, s3)
            # Rounds alternate the backends, so a noisy moment hits each of them alike.
            for _ in range(args.rounds):
                if not args.only or "filesystem" in args.only:
                    bench.round("filesystem")
                if not args.only or "s3" in args.only:
                    bench.round("s3")
                if not args.only or "redirect" in args.only:
                    bench.round("s3", redirect=True)
            bench.report()
        finally:
            s3.stop()


if __name__ == "__main__":
    main()
