"""Content-addressed files: blobs/<algorithm>/<ab>/<hex>, written only by temp → verify → rename."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from mirror.errors import DigestInvalid
from mirror.reference import Digest

log = logging.getLogger(__name__)

HASH_CHUNK = 1024 * 1024


class BlobFiles:
    """The shared blob files of every upstream and repository; one copy per digest."""

    def __init__(self, root: Path) -> None:
        self.blobs_dir = root / "blobs"
        # Temp files live on the same filesystem as the blobs, so the final rename is atomic.
        self.tmp_dir = root / "tmp"

    def open(self) -> None:
        self.blobs_dir.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(parents=True, exist_ok=True)

    def path(self, digest: Digest) -> Path:
        return self.blobs_dir / digest.algorithm / digest.hex[:2] / digest.hex

    def size_of(self, digest: Digest) -> int | None:
        """The stored blob's size, or None when it is not stored."""
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            return None

    def new_temp(self) -> Path:
        return self.tmp_dir / f"{uuid.uuid4().hex}.partial"

    def commit(self, temp: Path, digest: Digest) -> Path:
        """Move a verified temp file into place; readers see the whole blob or nothing."""
        final = self.path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, final)
        return final

    def discard(self, temp: Path) -> None:
        temp.unlink(missing_ok=True)

    def delete(self, digest: Digest) -> None:
        """Unlink a blob; readers that hold it open keep reading the old inode to the end."""
        self.path(digest).unlink(missing_ok=True)

    def stored_files(self) -> Iterator[tuple[Path, Digest | None]]:
        """Every file under blobs/, with its digest when its name is a valid one."""
        for path in self.blobs_dir.glob("*/*/*"):
            if not path.is_file():
                continue
            try:
                digest: Digest | None = Digest.parse(f"{path.parent.parent.name}:{path.name}")
            except DigestInvalid:
                digest = None
            yield path, digest

    def matches_digest(self, digest: Digest) -> bool | None:
        """Re-hash a stored blob (blocking: run it in a thread); None when there is no file
        (yet: a fill writes the row just before it renames the file into place)."""
        hasher = digest.hasher()
        try:
            with self.path(digest).open("rb") as file:
                while chunk := file.read(HASH_CHUNK):
                    hasher.update(chunk)
        except FileNotFoundError:
            return None
        return hasher.hexdigest() == digest.hex

    def sweep_temps(self) -> int:
        """Delete temp files a crash left behind; called at start-up, before any fill."""
        count = 0
        for leftover in self.tmp_dir.glob("*"):
            leftover.unlink(missing_ok=True)
            count += 1
        if count:
            log.info("removed %d temp files left by an earlier run", count)
        return count
