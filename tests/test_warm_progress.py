"""`mirror warm -f FILE` and what it shows while it works: one plain line per image when stderr
is a file or a pipe, and on a real terminal (tmux) one status line redrawn in place."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.ops import Cli
from support.poll import eventually
from support.procs import need

from mirror.cli.warm import Tally
from mirror.cli.warm_progress import status_line

LIST = """\
# what the air-gapped site needs

tool:1.0
   # an indented comment, then a line with a comment after the image
other:2.0   # the second one
"""


def add_images(hub: FakeHub) -> None:
    """tool:1.0, an index of two platforms (3 manifests, 4 blobs); other:2.0, one manifest."""
    amd64 = hub.add_image("library/tool", "amd64", [hub.make_blob(40_000, seed=1)])
    arm64 = hub.add_image("library/tool", "arm64", [hub.make_blob(50_000, seed=2)])
    hub.add_index("library/tool", "1.0", [amd64, arm64])
    hub.add_image("library/other", "2.0", [hub.make_blob(300_000, seed=3)])


def url(mirror: TestServer) -> str:
    return str(mirror.make_url(""))


async def test_images_from_a_file_and_one_plain_line_each(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror, tmp_path: Path
) -> None:
    add_images(hub)
    mirror = await make_mirror()
    listing = tmp_path / "list.txt"
    listing.write_text(LIST)

    result = await cli("warm", "--server", url(mirror), "-f", str(listing), "nothing:here")
    assert result.returncode == 1  # nothing:here does not exist
    reports = result.json()
    # The images named on the command line first, then the file's, in its order.
    assert [report["image"] for report in reports] == ["nothing:here", "tool:1.0", "other:2.0"]
    _, tool, other = reports
    assert (tool["manifests"], tool["blobs"], tool["errors"]) == (3, 4, [])
    assert (other["manifests"], other["blobs"], other["errors"]) == (1, 2, [])

    lines = result.stderr.splitlines()
    assert lines[0] == "failed nothing:here: manifest answered 404"
    for line, report in zip(lines[1:], (tool, other), strict=True):
        size = f"{report['bytes'] / 1000:.1f} kB"
        expected = (
            f"warmed {report['image']}: {report['manifests']} manifests, "
            f"{report['blobs']} blobs, {size} in "
        )
        assert line.startswith(expected) and re.fullmatch(r"[\d.]+s", line[len(expected) :]), line
    assert "\r" not in result.stderr and "\x1b" not in result.stderr  # no terminal codes


async def test_images_from_stdin(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_images(hub)
    mirror = await make_mirror()
    monkeypatch.setattr(sys, "stdin", io.StringIO("other:2.0\n\n# done\n"))
    result = await cli("warm", "--server", url(mirror), "--file", "-")
    assert result.returncode == 0, result.stderr
    assert [report["image"] for report in result.json()] == ["other:2.0"]
    assert result.stderr.startswith("warmed other:2.0: 1 manifests, 2 blobs, ")


async def test_no_images_or_an_unreadable_file_is_a_one_line_usage_error(
    cli: Cli, tmp_path: Path
) -> None:
    comments = tmp_path / "only-comments.txt"
    comments.write_text("# nothing yet\n\n")
    server = ["--server", "http://127.0.0.1:9"]  # never contacted
    for args in ([], ["-f", str(comments)]):
        result = await cli("warm", *server, *args)
        assert result.returncode == 2, args
        assert result.stdout == ""
        assert result.stderr == "mirror warm: no images to warm: name some, or give -f FILE\n"
    missing = await cli("warm", *server, "-f", str(tmp_path / "absent.txt"), "alpine")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == f"mirror warm: cannot read {tmp_path / 'absent.txt'}: " + (
        "No such file or directory\n"
    )


def test_the_status_line_tells_counts_bytes_rate_and_time_left() -> None:
    # Halfway through the first of two images: its manifests announced 2 MB, 1 MB has come.
    tally = Tally(images=2, images_started=1, blobs=4, blobs_done=2, bytes=2_000_000)
    tally.bytes_read = 1_000_000
    # 4 MB expected in all (the second image guessed as big as the first), 3 MB to go at 1 MB/s.
    assert status_line(tally, 1.0) == "images 0/2  blobs 2/4  1.0 MB  1.0 MB/s  ETA 3.0s"
    assert status_line(Tally(images=1), 0.0).endswith("0 B/s  ETA --")
    done = Tally(images=1, images_started=1, images_done=1, blobs=2, blobs_done=2, bytes=5000)
    done.bytes_read = 5000
    assert status_line(done, 125.0) == "images 1/1  blobs 2/2  5.0 kB  40 B/s  done in 2m05s"


# -- a real terminal ------------------------------------------------------------------------


class Tmux:
    """A tmux server of the test's own (its own socket), one session of 120x30 running bash."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket

    async def run(self, *args: str) -> str:
        command = ["tmux", "-S", str(self.socket), *args]
        done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
        return done.stdout

    async def screen(self) -> list[str]:
        return (await self.run("capture-pane", "-p", "-t", "warm")).splitlines()


@asynccontextmanager
async def terminal(tmp_path: Path) -> AsyncIterator[Tmux]:
    need("tmux", why="Debian package tmux")
    tmux = Tmux(tmp_path / "tmux.sock")
    shell = ["bash", "--norc", "--noprofile"]
    await tmux.run("new-session", "-d", "-s", "warm", "-x", "120", "-y", "30", *shell)
    try:
        yield tmux
    finally:
        await tmux.run("kill-session", "-t", "warm")


def status_lines(screen: list[str]) -> list[str]:
    return [line for line in screen if re.match(r"images \d+/\d+  blobs \d+/\d+  ", line)]


async def test_a_terminal_shows_one_live_status_line(
    hub: FakeHub, make_mirror: MakeMirror, tmp_path: Path
) -> None:
    add_images(hub)
    mirror = await make_mirror()
    listing, report = tmp_path / "list.txt", tmp_path / "report.json"
    listing.write_text(LIST)
    # Every blob stops halfway until the gate opens: the run is watched while it is under way.
    gate = hub.faults.blob_gate = asyncio.Event()
    command = [sys.executable, "-m", "mirror", "warm", "--server", url(mirror), "-f", str(listing)]
    async with terminal(tmp_path) as tmux:
        await tmux.run(
            "send-keys",
            "-t",
            "warm",
            f"{shlex.join(command)} > {report}; echo warm-exit=$?",
            "Enter",
        )

        async def under_way() -> list[str] | None:
            lines = status_lines(await tmux.screen())
            # tool:1.0's amd64 manifest is read: its config and layer are being fetched.
            return lines if lines and lines[0].startswith("images 0/2  blobs 0/2  ") else None

        [line] = await eventually(under_way, what="the status line while tool:1.0 is fetched")
        assert re.fullmatch(r"images 0/2  blobs 0/2  .* B/s  ETA \S+", line), line

        gate.set()
        screen = await eventually(lambda: finished(tmux), what="mirror warm exits")
        # The same line, redrawn in place: one status line on the screen, showing the end.
        [final] = status_lines(screen)
        assert re.fullmatch(r"images 2/2  blobs 6/6  \d+\.\d kB  \S+ \S+/s  done in \S+", final)
        assert "warm-exit=0" in screen
        assert not any(line.startswith(("warmed ", "failed ")) for line in screen)
    reports = json.loads(report.read_text())
    assert [(r["image"], r["blobs"], r["errors"]) for r in reports] == [
        ("tool:1.0", 4, []),
        ("other:2.0", 2, []),
    ]


async def finished(tmux: Tmux) -> list[str] | None:
    """The screen once the shell printed the exit status (the typed command has `$?`)."""
    screen = await tmux.screen()
    return screen if any(re.fullmatch(r"warm-exit=\d+", line) for line in screen) else None
