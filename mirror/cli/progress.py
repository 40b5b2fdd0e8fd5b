"""A one-line progress bar for long operations, shown only on a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable


def progress_printer() -> Callable[[int, int], None] | None:
    """A one-line progress bar (on stderr, so stdout stays JSON) when stdout is a terminal."""
    if not sys.stdout.isatty():
        return None

    def show(done: int, total: int) -> None:
        width = 30
        filled = width * done // max(total, 1)
        bar = "#" * filled + "-" * (width - filled)
        end = "\n" if done >= total else ""
        print(f"\r[{bar}] {done}/{total}", end=end, file=sys.stderr, flush=True)

    return show
