"""How `mirror warm` shows its progress on stderr (stdout stays the JSON report).

On a terminal: one status line redrawn in place (images, blobs, bytes, rate, ETA). Otherwise (a
log, a pipe, CI): one plain line per finished image, which reads well in a file.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from mirror.cli.warm import Tally, WarmReport, Watcher

REDRAW = 0.1  # seconds: bytes arrive far more often than a terminal needs redrawing
CLEAR_LINE = "\r\x1b[K"  # back to the line's start, erase to its end


def human_bytes(count: float) -> str:
    """Decimal units, as registries and `docker images` show sizes: 3.4 MB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def image_line(report: WarmReport, seconds: float) -> str:
    if report.errors:
        # Most errors already begin with the image's name: not twice on one line.
        prefix = f"{report.image}: "
        reasons = (error.removeprefix(prefix) for error in report.errors)
        return f"failed {report.image}: {'; '.join(reasons)}"
    return (
        f"warmed {report.image}: {report.manifests} manifests, {report.blobs} blobs, "
        f"{human_bytes(report.bytes)} in {human_duration(seconds)}"
    )


def status_line(tally: Tally, elapsed: float) -> str:
    """`images 1/3  blobs 5/12  3.4 MB  1.2 MB/s  ETA 4s` (`done in 9.1s` at the end)."""
    rate = tally.bytes_read / elapsed if elapsed > 0 else 0.0
    parts = [
        f"images {tally.images_done}/{tally.images}",
        f"blobs {tally.blobs_done}/{tally.blobs}",
        human_bytes(tally.bytes_read),
        f"{human_bytes(rate)}/s",
    ]
    if tally.images_done == tally.images:
        parts.append(f"done in {human_duration(elapsed)}")
    else:
        eta = _eta(tally, rate)
        parts.append("ETA --" if eta is None else f"ETA {human_duration(eta)}")
    return "  ".join(parts)


def _eta(tally: Tally, rate: float) -> float | None:
    """The bytes still to come over the rate so far. Images not yet begun are guessed to be as
    big as the ones begun, whose manifests told their sizes."""
    if rate <= 0 or tally.images_started == 0:
        return None
    expected = tally.bytes * tally.images / tally.images_started
    return max(expected - tally.bytes_read, 0) / rate


class LiveLine:
    """The status line, redrawn in place; a failed image is printed above it, to stay."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._started = clock()
        self._drawn = -REDRAW  # when the line was last drawn

    def update(self, tally: Tally) -> None:
        if self._clock() - self._drawn >= REDRAW:
            self._draw(tally)

    def image_done(self, tally: Tally, report: WarmReport, seconds: float) -> None:
        if report.errors:
            self._stream.write(CLEAR_LINE + image_line(report, seconds) + "\n")
        self._draw(tally)

    def finish(self, tally: Tally) -> None:
        self._draw(tally)
        self._stream.write("\n")
        self._stream.flush()

    def _draw(self, tally: Tally) -> None:
        now = self._clock()
        self._drawn = now
        # Never wider than the terminal: a wrapped line would not be redrawn in place.
        width = self._columns() - 1
        self._stream.write(CLEAR_LINE + status_line(tally, now - self._started)[:width])
        self._stream.flush()

    def _columns(self) -> int:
        # The stream's own terminal: stdout may well be redirected to a file meanwhile.
        try:
            return os.get_terminal_size(self._stream.fileno()).columns
        except (OSError, ValueError, io.UnsupportedOperation):
            return 80


class PlainLines:
    """One line per finished image, nothing in between."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def update(self, tally: Tally) -> None:
        pass

    def image_done(self, tally: Tally, report: WarmReport, seconds: float) -> None:
        print(image_line(report, seconds), file=self._stream, flush=True)

    def finish(self, tally: Tally) -> None:
        pass


def watcher_for(stream: TextIO | None = None) -> Watcher:
    stream = stream or sys.stderr
    return LiveLine(stream) if stream.isatty() else PlainLines(stream)
