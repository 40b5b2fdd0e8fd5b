"""`mirror export --lock images.lock -o bundle.tar`: the locked images as an OCI image layout.

Everything is read through a running mirror, which fetches what it does not hold yet. The
layout (`oci-layout`, `blobs/sha256/…`, then `index.json` last) goes into a tar or a directory;
each blob is written once, streamed from the response to the output (memory stays small
whatever the layer sizes) and checked against its digest on the way. A tar is written under
a temporary name and renamed when complete, so a failed export leaves no bundle behind.
`index.json` names each image by its full reference (`org.opencontainers.image.ref.name`),
which is what `skopeo copy oci-archive:bundle.tar:<ref>` looks for, and carries when its tag was
resolved (RESOLVED_AT), which an import records as the tag's age.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from mirror.cli.registry_client import Manifest, RegistryClient
from mirror.errors import OperationError
from mirror.media_types import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from mirror.upkeep.lockfile import ImageRef, LockedImage, format_time

REF_NAME = "org.opencontainers.image.ref.name"
RESOLVED_AT = "mirror.resolved-at"
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
COPY_CHUNK = 1024 * 1024
# index.json names Docker-typed manifests by their OCI twin: containers/image (skopeo, podman)
# looks up a reference only among descriptors of the two OCI types, and the twins have the
# same structure. The manifest's bytes (hence its digest) stay as the registry served them,
# their own `mediaType` field included, which is what an import stores.
OCI_TWIN = {DOCKER_LIST: OCI_INDEX, DOCKER_MANIFEST: OCI_MANIFEST}


@dataclass(slots=True)
class ExportTally:
    images: int = 0
    manifests: int = 0
    blobs: int = 0  # written: each digest once
    bytes: int = 0


class Layout(Protocol):
    def has(self, name: str, size: int) -> bool: ...

    def add(self, name: str, size: int, source: IO[bytes]) -> None: ...

    def finish(self) -> None: ...

    def abandon(self) -> None: ...


class TarLayout:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._partial = path.with_name(path.name + ".partial")
        # Open across many calls (closed by finish or abandon): no `with` can hold it.
        self._tar = tarfile.TarFile(
            self._partial, "w", format=tarfile.PAX_FORMAT, copybufsize=COPY_CHUNK
        )

    def has(self, name: str, size: int) -> bool:
        return False

    def add(self, name: str, size: int, source: IO[bytes]) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        self._tar.addfile(info, source)

    def finish(self) -> None:
        self._tar.close()
        os.replace(self._partial, self._path)

    def abandon(self) -> None:
        self._tar.close()
        self._partial.unlink(missing_ok=True)


class DirLayout:
    """A directory: blobs already there with the right size are kept (an export that was cut
    short resumes), each new one appears whole (written aside, then renamed)."""

    def __init__(self, root: Path) -> None:
        self._root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)

    def has(self, name: str, size: int) -> bool:
        path = self._root / name
        return name.startswith("blobs/") and path.is_file() and path.stat().st_size == size

    def add(self, name: str, size: int, source: IO[bytes]) -> None:
        final = self._root / name
        partial = final.with_name(final.name + ".partial")
        with partial.open("wb") as out:
            while chunk := source.read(COPY_CHUNK):
                out.write(chunk)
        if partial.stat().st_size != size:
            partial.unlink()
            raise OperationError(f"{name}: {size} bytes announced, fewer received")
        os.replace(partial, final)

    def finish(self) -> None:
        pass

    def abandon(self) -> None:
        pass  # what was written whole stays: a second run goes on from there


class Checked(io.RawIOBase):
    """Reads a response, hashing it; `verify` after the end names a blob that differs."""

    def __init__(self, source: IO[bytes], digest: str, seen: Callable[[int], None]) -> None:
        self._source, self._digest, self._seen = source, digest, seen
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._source.read(len(buffer))
        buffer[: len(data)] = data
        self._hash.update(data)
        self._seen(len(data))
        return len(data)

    def verify(self) -> None:
        if f"sha256:{self._hash.hexdigest()}" != self._digest:
            raise OperationError(f"blob {self._digest}: the mirror sent other content")


class Exporter:
    def __init__(
        self, client: RegistryClient, layout: Layout, progress: Callable[[ExportTally], None]
    ) -> None:
        self._client, self._layout, self._progress = client, layout, progress
        self._written: set[str] = set()
        self.tally = ExportTally()

    def export(self, images: Sequence[LockedImage]) -> None:
        self._layout.add("oci-layout", len(LAYOUT), io.BytesIO(LAYOUT))
        entries = [self._image(image) for image in images]
        index = json.dumps({"schemaVersion": 2, "manifests": entries}, indent=1).encode()
        self._layout.add("index.json", len(index), io.BytesIO(index))

    def _image(self, image: LockedImage) -> dict[str, Any]:
        top = self._manifest(image.reference, image.digest)
        if top.digest not in {m.digest for m in image.manifests}:
            for locked in image.manifests:
                self._image_manifest(
                    image.reference, self._manifest(image.reference, locked.digest)
                )
        else:
            self._image_manifest(image.reference, top)
        self.tally.images += 1
        self._progress(self.tally)
        return {
            "mediaType": OCI_TWIN.get(top.media_type, top.media_type),
            "digest": top.digest,
            "size": len(top.body),
            "annotations": {
                REF_NAME: str(image.reference),
                RESOLVED_AT: format_time(image.resolved_at),
            },
        }

    def _manifest(self, reference: ImageRef, digest: str) -> Manifest:
        manifest = self._client.manifest(reference, digest)
        self.tally.manifests += 1
        self._store(digest, len(manifest.body), lambda: io.BytesIO(manifest.body))
        return manifest

    def _image_manifest(self, reference: ImageRef, manifest: Manifest) -> None:
        document = manifest.document()
        parts = [document.get("config"), *(document.get("layers") or [])]
        for part in parts:
            if not isinstance(part, dict):
                continue
            digest, size = part.get("digest"), part.get("size")
            if not (isinstance(digest, str) and isinstance(size, int)):
                raise OperationError(f"manifest {manifest.digest} has a malformed descriptor")
            self._blob(reference, digest, size)

    def _blob(self, reference: ImageRef, digest: str, size: int) -> None:
        if digest in self._written:
            return
        if not digest.startswith("sha256:"):
            raise OperationError(f"blob {digest}: an OCI layout holds sha256 blobs only")
        name = f"blobs/sha256/{digest.removeprefix('sha256:')}"
        if not self._layout.has(name, size):
            with self._client.blob(reference, digest) as response:
                checked = Checked(response, digest, self._count)
                self._layout.add(name, size, checked)  # type: ignore[arg-type]
                checked.verify()
        self._written.add(digest)
        self.tally.blobs += 1
        self._progress(self.tally)

    def _store(self, digest: str, size: int, source: Callable[[], IO[bytes]]) -> None:
        if digest in self._written:
            return
        name = f"blobs/sha256/{digest.removeprefix('sha256:')}"
        if not self._layout.has(name, size):
            self._layout.add(name, size, source())
        self._written.add(digest)

    def _count(self, received: int) -> None:
        self.tally.bytes += received
        self._progress(self.tally)


def export_bundle(
    server: str,
    images: Sequence[LockedImage],
    output: Path,
    progress: Callable[[ExportTally], None],
) -> ExportTally:
    """Write the bundle: a directory when `output` is one (or ends with /), else a tar."""
    as_dir = output.is_dir() or str(output).endswith("/")
    layout: Layout = DirLayout(output) if as_dir else TarLayout(output)
    exporter = Exporter(RegistryClient(server), layout, progress)
    try:
        exporter.export(images)
    except BaseException:
        layout.abandon()
        raise
    layout.finish()
    return exporter.tally
