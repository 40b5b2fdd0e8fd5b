"""Time skopeo pulls of a ~55 MB image: direct from a registry, cold and warm through the mirror.

Starts a real docker-registry and real mirror processes on 127.0.0.1, builds and pushes the
seeded test image (tests/support/images.py), and prints a table. See bench/README.md.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO_ROOT / "tests"), str(REPO_ROOT)]

from support.images import build_layout, push_images  # noqa: E402
from support.mirror_process import MirrorProcess, process_config  # noqa: E402
from support.registry import Registry, count  # noqa: E402
from support.skopeo import Skopeo, diff_dirs  # noqa: E402


@dataclass(slots=True)
class Row:
    scenario: str
    seconds: list[float]
    upstream_blob_gets: int
    identical: bool


def image_bytes(pulled: Path) -> int:
    return sum(p.stat().st_size for p in pulled.iterdir() if p.is_file())


def timed_pull(skopeo: Skopeo, host: str, ref: str, dest: Path) -> float:
    start = time.perf_counter()
    skopeo.pull(host, ref, dest)
    return time.perf_counter() - start


class Bench:
    def __init__(self, work: Path, runs: int) -> None:
        self.work = work
        self.runs = runs
        self.skopeo = Skopeo(work / "skopeo")
        self.registry = Registry(work / "registry")
        self.mirrors: list[MirrorProcess] = []
        self.reference: Path | None = None
        self.ref = ""
        self._n = 0

    def dest(self) -> Path:
        self._n += 1
        return self.work / "pulls" / f"pull-{self._n}"

    def setup(self) -> None:
        self.registry.start()
        layout = self.work / "layout"
        build_layout(layout)
        self.ref = push_images(self.skopeo, layout, self.registry.host, ["oci"])["oci"].ref

    def mirror(self) -> MirrorProcess:
        root = self.work / f"mirror-{len(self.mirrors)}"
        proc = MirrorProcess(root, process_config(self.registry.url, root / "data"))
        self.mirrors.append(proc)
        proc.start()
        return proc

    def measure(self, scenario: str, runs: int, pull: Callable[[Path], float]) -> Row:
        mark = self.registry.mark()
        seconds: list[float] = []
        identical = True
        for _ in range(runs):
            dest = self.dest()
            seconds.append(pull(dest))
            if self.reference is None:
                self.reference = dest
            else:
                identical = identical and not diff_dirs(self.reference, dest)
                shutil.rmtree(dest)
        blob_gets = count(self.registry.requests_since(mark))[("GET", "blob")]
        return Row(scenario, seconds, blob_gets, identical)

    def run(self) -> list[Row]:
        host, ref = self.registry.host, self.ref
        rows = [self.measure("direct", self.runs, lambda d: timed_pull(self.skopeo, host, ref, d))]

        # Each cold run needs an empty cache: a fresh mirror (its start-up is not timed).
        cold: list[float] = []
        mark = self.registry.mark()
        identical = True
        for _ in range(self.runs):
            mirror = self.mirror()
            dest = self.dest()
            cold.append(timed_pull(self.skopeo, mirror.host, ref, dest))
            assert self.reference is not None
            identical = identical and not diff_dirs(self.reference, dest)
            shutil.rmtree(dest)
        blob_gets = count(self.registry.requests_since(mark))[("GET", "blob")]
        rows.append(Row("mirror cold", cold, blob_gets, identical))

        warm = self.mirrors[-1]
        rows.append(
            self.measure(
                "mirror warm", self.runs, lambda d: timed_pull(self.skopeo, warm.host, ref, d)
            )
        )
        self.registry.stop()
        rows.append(
            self.measure(
                "mirror warm, upstream down",
                self.runs,
                lambda d: timed_pull(self.skopeo, warm.host, ref, d),
            )
        )
        return rows

    def close(self) -> None:
        for proc in self.mirrors:
            proc.stop()
        self.registry.stop()


def print_table(rows: list[Row], size: int) -> None:
    header = f"{'scenario':<28} {'runs':>4} {'min s':>7} {'median s':>9} {'max s':>7} "
    header += f"{'MB/s (median)':>13} {'upstream blob GETs':>18} {'identical':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        med = statistics.median(row.seconds)
        print(
            f"{row.scenario:<28} {len(row.seconds):>4} {min(row.seconds):>7.3f} {med:>9.3f} "
            f"{max(row.seconds):>7.3f} {size / med / 1e6:>13.1f} {row.upstream_blob_gets:>18} "
            f"{'yes' if row.identical else 'NO':>9}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="pulls per scenario (default 3)")
    parser.add_argument("--workdir", type=Path, help="keep everything here instead of a tmp dir")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    with tempfile.TemporaryDirectory(prefix="mirror-bench-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        bench = Bench(work, args.runs)
        try:
            bench.setup()
            rows = bench.run()
        except Exception:
            for n, proc in enumerate(bench.mirrors):
                print(f"--- mirror-{n} output ---\n{proc.output()}", file=sys.stderr)
            raise
        finally:
            bench.close()
        assert bench.reference is not None
        size = image_bytes(bench.reference)
    print(f"image {bench.ref}: {size / 1e6:.1f} MB in the pulled dir (skopeo copy ... dir:)")
    print_table(rows, size)
    return 0 if all(r.identical for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
