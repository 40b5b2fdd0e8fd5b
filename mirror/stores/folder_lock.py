"""One owner per data folder: an exclusive `flock` on `lock` in the folder, holding the PID.

`mirror serve` holds it for the life of the process and the offline commands while they run,
so neither a second server nor `mirror gc --data` can sweep `tmp/` under a running fill. The
kernel drops the lock when the process ends, however it ends: a stale file is never "held".
The file stays (removing it would race with the next owner); its content is only a hint.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from mirror.errors import DataFolderLocked, DataFolderUnusable, StartupError

LOCK_FILE = "lock"
PID_WAIT = 0.2  # seconds to wait for a new holder to write its PID before naming none


class FolderLock:
    """The data folder's lock: `acquire` checks the folder is usable and takes the lock, or
    raises a StartupError (DataFolderLocked, with the holder's PID, or DataFolderUnusable)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, *, create: bool) -> None:
        """Take the lock (creating the folder first when `create`); never blocks."""
        with unusable_folder(self.root):  # a parent that may not be entered: one line too
            if self.root.exists() and not self.root.is_dir():
                raise DataFolderUnusable(self.root, "it is a file, not a folder")
            present = self.root.is_dir()
        if create and not present:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DataFolderUnusable(self.root, f"cannot create it: {describe(exc)}") from None
        with unusable_folder(self.root):
            # O_RDWR also proves the folder writable: a read-only mount refuses it.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            os.close(fd)
            raise DataFolderLocked(self.root, pid, self.path) from None
        except OSError as exc:  # a filesystem without flock
            os.close(fd)
            raise DataFolderUnusable(
                self.root, f"cannot lock {self.path}: {describe(exc)}"
            ) from None
        try:
            with unusable_folder(self.root):
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except StartupError:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Let go (the PID is cleared first: an empty file names no holder)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def _holder(fd: int) -> int | None:
    """The PID the holder wrote, waiting briefly for one that has just taken the lock."""
    deadline = time.monotonic() + PID_WAIT
    while True:
        try:
            text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


@contextlib.contextmanager
def unusable_folder(root: Path) -> Iterator[None]:
    """Turn a file-system or SQLite failure while opening the folder into DataFolderUnusable:
    one line naming the cause, not a traceback."""
    try:
        yield
    except StartupError:
        raise
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename and Path(exc.filename) != root else ""
        raise DataFolderUnusable(root, f"{where}{describe(exc)}") from exc
    except sqlite3.Error as exc:
        raise DataFolderUnusable(root, f"SQLite: {exc}") from exc


def describe(exc: OSError) -> str:
    """ "read-only file system", "permission denied": the cause, without the traceback."""
    text = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else (exc.strerror or str(exc))
    return text[:1].lower() + text[1:]
