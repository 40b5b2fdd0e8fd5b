"""Whether the data folder's disk is full, and a reserve that lets deletes run when it is."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

# Freed when a delete fails for lack of space: SQLite needs room in its write-ahead log even
# to delete rows, and a purge is how an operator frees a full disk.
RESERVE_BYTES = 4 * 1024 * 1024
RESERVE_FILE = "reserve"
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_no_space(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in NO_SPACE


class DiskSpace:
    """`full` is true from a write that failed for lack of space until one succeeds."""

    def __init__(self, root: Path) -> None:
        self._reserve = root / RESERVE_FILE
        self.full = False

    def noted_full(self) -> None:
        if not self.full:
            log.error("the data folder's disk is full: new content is not stored")
        self.full = True

    def noted_write(self) -> None:
        if self.full:
            log.warning("the data folder's disk has room again")
        self.full = False

    def release_reserve(self) -> bool:
        """Give the reserve back to the filesystem; False when there was none to give."""
        try:
            self._reserve.unlink()
        except FileNotFoundError:
            return False
        log.warning("released the %d-byte reserve so that a delete can run", RESERVE_BYTES)
        return True

    def restore_reserve(self) -> None:
        """Put the reserve back when there is room (best effort, at start and by the janitor)."""
        if self._reserve.exists():
            return
        temp = self._reserve.with_suffix(".partial")
        try:
            with temp.open("wb") as file:
                try:
                    os.posix_fallocate(file.fileno(), 0, RESERVE_BYTES)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                        raise
                    file.write(bytes(RESERVE_BYTES))  # a filesystem without fallocate
                    os.fsync(file.fileno())
            os.replace(temp, self._reserve)
        except OSError as exc:
            # Best effort: no room yet (the next janitor pass tries again), or the folder is
            # not writable, which /readyz reports on its own.
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            if not is_no_space(exc):
                log.warning("cannot restore the disk reserve: %s", exc)
