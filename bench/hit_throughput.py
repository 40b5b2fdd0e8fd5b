"""Cache-hit throughput: how fast the mirror serves a stored blob to concurrent clients.

Starts a fake upstream (tests/fakes) and the mirror as a real subprocess, pulls one blob once
(the fill), then runs `curl` clients in parallel, each downloading the blob repeatedly from the
mirror, and reports the aggregate rate. Run it twice to compare sendfile with aiohttp's
read/write fallback:

    .venv/bin/python bench/hit_throughput.py
    .venv/bin/python bench/hit_throughput.py --no-sendfile

Everything listens on 127.0.0.1 and the run is bounded by --clients x --rounds downloads.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT)]

from fakes import FakeHub  # noqa: E402
from support.mirror_process import MirrorProcess, process_config  # noqa: E402

MIB = 1024 * 1024


async def download(url: str, rounds: int) -> int:
    """One client: `rounds` sequential downloads with curl; returns bytes received."""
    total = 0
    for _ in range(rounds):
        proc = await asyncio.create_subprocess_exec(
            "curl",
            "-sS",
            "--fail",
            "-o",
            "/dev/null",
            "-w",
            "%{size_download}",
            url,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"curl failed with {proc.returncode}")
        total += int(out)
    return total


async def run(args: argparse.Namespace) -> None:
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for this benchmark")
    if args.no_sendfile:
        os.environ["AIOHTTP_NOSENDFILE"] = "1"  # inherited by the mirror subprocess
    async with FakeHub() as hub:
        data = os.urandom(args.size_mib * MIB)
        digest = hub.add_blob("library/bench", data)
        with tempfile.TemporaryDirectory() as tmp:
            mirror = MirrorProcess(Path(tmp), process_config(hub.url, Path(tmp) / "data"))
            mirror.start()
            try:
                url = f"{mirror.url}/v2/library/bench/blobs/{digest}"
                started = time.perf_counter()
                await download(url, 1)
                cold = time.perf_counter() - started
                started = time.perf_counter()
                sizes = await asyncio.gather(
                    *(download(url, args.rounds) for _ in range(args.clients))
                )
                elapsed = time.perf_counter() - started
            finally:
                mirror.stop()
    total = sum(sizes)
    mode = "read/write fallback" if args.no_sendfile else "sendfile"
    print(f"blob {args.size_mib} MiB, {args.clients} clients x {args.rounds} rounds, {mode}")
    print(f"cold (one fill through the fake upstream): {cold:.2f} s")
    print(f"hits: {total / MIB:.0f} MiB in {elapsed:.2f} s = {total / elapsed / 1e9:.2f} GB/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--no-sendfile", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
