"""The first half of an import: read a bundle's tar once, stage and check every blob.

Runs in a thread (blocking reads, hashing, writes). Each blob is hashed while it is copied to a
temp file under the data folder (the same file system as the blobs, so committing it later is a
rename); one whose bytes do not match its name, or that ends early, refuses the whole bundle,
and every temp file staged so far is removed. Nothing here touches the index.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from mirror.errors import DigestInvalid, MirrorError
from mirror.reference import Digest
from mirror.stores.blob_files import BlobFiles

COPY_CHUNK = 1024 * 1024
INDEX_LIMIT = 16 * 1024 * 1024  # index.json: descriptors only; anything larger is not one


class BundleRefused(MirrorError):
    """The bundle is not imported; the message names the blob or file at fault."""

    status = 400
    code = "BLOB_UPLOAD_INVALID"


@dataclass(slots=True)
class Staged:
    """What a bundle held: its blobs (as temp files) and its index.json."""

    blobs: dict[Digest, tuple[Path, int]] = field(default_factory=dict)
    index: bytes | None = None
    layout: bytes | None = None

    def discard(self) -> None:
        for temp, _ in self.blobs.values():
            temp.unlink(missing_ok=True)
        self.blobs.clear()


def stage_tar(source: IO[bytes] | io.RawIOBase, files: BlobFiles) -> Staged:
    """Read a tar stream to its end; BundleRefused on bad content, nothing left behind."""
    staged = Staged()
    current = "the bundle"
    try:
        with tarfile.open(fileobj=source, mode="r|*") as tar:
            for member in tar:
                current = _described(member.name)
                _stage_member(tar, member, staged, files)
    except BundleRefused:
        staged.discard()
        raise
    except (tarfile.TarError, EOFError) as exc:
        staged.discard()
        raise BundleRefused(f"the bundle is cut short or not a tar, in {current}: {exc}") from None
    except BaseException:
        staged.discard()
        raise
    return staged


def _described(name: str) -> str:
    """`blob sha256:…` for a blob's member (the digest an operator looks for), else the name."""
    parts = os.path.normpath(name).lstrip("/").split("/")
    return f"blob {parts[1]}:{parts[2]}" if len(parts) == 3 and parts[0] == "blobs" else name


def _stage_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, staged: Staged, files: BlobFiles
) -> None:
    name = os.path.normpath(member.name).lstrip("/")
    if not member.isfile():
        return  # directories; links and devices have no place in a layout and are skipped
    reader = tar.extractfile(member)
    assert reader is not None  # a regular file always has content
    if name in ("index.json", "oci-layout"):
        data = reader.read(INDEX_LIMIT + 1)
        if len(data) > INDEX_LIMIT:
            raise BundleRefused(f"{name} is larger than {INDEX_LIMIT} bytes")
        if name == "index.json":
            staged.index = data
        else:
            staged.layout = data
        return
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "blobs":
        return  # not part of the layout (a README beside it, say)
    try:
        digest = Digest.parse(f"{parts[1]}:{parts[2]}")
    except DigestInvalid:
        raise BundleRefused(f"{name} is not named by a digest") from None
    if digest in staged.blobs:
        return
    temp = files.new_temp()
    staged.blobs[digest] = (temp, member.size)  # before writing: a failure removes it too
    hasher = digest.hasher()
    with temp.open("wb") as out:
        while chunk := reader.read(COPY_CHUNK):
            hasher.update(chunk)
            out.write(chunk)
    if hasher.hexdigest() != digest.hex:
        raise BundleRefused(f"blob {digest}: its content does not match its digest")


def stage_path(path: Path, files: BlobFiles) -> Staged:
    """A tar file, or a layout directory."""
    if path.is_dir():
        return stage_directory(path, files)
    with path.open("rb") as source:
        return stage_tar(source, files)


def stage_directory(root: Path, files: BlobFiles) -> Staged:
    """An OCI layout directory (`skopeo copy … oci:DIR`), read as the tar of it would be."""
    if not (root / "index.json").is_file():
        raise BundleRefused(f"{root} is not an OCI image layout: it has no index.json")
    return stage_tar(TarStream(directory_tar(root)), files)


def directory_tar(root: Path) -> Iterator[bytes]:
    """A tar of an OCI layout directory, produced as it is read (no copy on disk): oci-layout
    and blobs first, index.json last (a tar cut short then lacks its index)."""
    paths = [root / "oci-layout"] if (root / "oci-layout").is_file() else []
    blob_root = root / "blobs"
    if blob_root.is_dir():
        paths += sorted(p for p in blob_root.glob("*/*") if p.is_file())
    paths.append(root / "index.json")
    for path in paths:
        info = tarfile.TarInfo(path.relative_to(root).as_posix())
        info.size, info.mode = path.stat().st_size, 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        with path.open("rb") as file:
            while chunk := file.read(COPY_CHUNK):
                yield chunk
        if info.size % tarfile.BLOCKSIZE:
            yield tarfile.NUL * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)
    yield tarfile.NUL * (tarfile.BLOCKSIZE * 2)


class TarStream(io.RawIOBase):
    """A readable file over an iterator of byte chunks."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        taken, self._pending = self._pending[: len(buffer)], self._pending[len(buffer) :]
        buffer[: len(taken)] = taken
        return len(taken)
