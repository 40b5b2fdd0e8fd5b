"""Whether a file changed since it was last read: what certificate and user-file reloads watch."""

from __future__ import annotations

import os
from pathlib import Path

# Modification time, size and inode, as stat follows links (cert-manager swaps a symlink,
# certbot and editors replace files): None while the file cannot be read.
FileState = tuple[int, int, int] | None


def file_state(path: Path) -> FileState:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino
