"""`mirror warm`: pull images through a running mirror so that it caches every piece of them.

A client pull caches only its own platform; warming walks an index or manifest list into every
platform asked for (all by default) and fetches each config and layer, reading and discarding the
bytes. Used before cutting a mirror off the network (docs/airgapped.md). How it goes is told to
a Watcher (warm_progress.py: a live line on a terminal, a line per image otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from mirror.errors import OperationError
from mirror.media_types import ALL_MANIFEST_TYPES

BLOB_CONCURRENCY = 4
READ_CHUNK = 1024 * 1024
TICK = 0.5  # seconds between redraws while no bytes arrive (the rate falls, the ETA grows)


@dataclass(slots=True)
class WarmReport:
    image: str
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Tally:
    """Counts across every image, for a progress display. Totals grow as manifests are read:
    a manifest adds its config and layers, with the sizes it announces."""

    images: int
    images_started: int = 0
    images_done: int = 0
    blobs: int = 0
    blobs_done: int = 0
    bytes: int = 0
    bytes_read: int = 0


class Watcher(Protocol):
    def update(self, tally: Tally) -> None:
        """Something moved (often: bytes arrived); cheap to call."""

    def image_done(self, tally: Tally, report: WarmReport, seconds: float) -> None: ...

    def finish(self, tally: Tally) -> None: ...


class Unwatched:
    def update(self, tally: Tally) -> None:
        pass

    def image_done(self, tally: Tally, report: WarmReport, seconds: float) -> None:
        pass

    def finish(self, tally: Tally) -> None:
        pass


def read_image_list(source: str) -> list[str]:
    """Image references from a file (`-`: stdin), one a line; `#` starts a comment (no image
    reference holds one) and blank lines are skipped. OSError or UnicodeError when unreadable."""
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    lines = (line.partition("#")[0].strip() for line in text.splitlines())
    return [line for line in lines if line]


def split_image(image: str) -> tuple[str, str]:
    """`alpine:3.19` → ("alpine", "3.19"); `repo@sha256:…` → ("repo", "sha256:…")."""
    if "@" in image:
        name, _, ref = image.partition("@")
        return name, ref
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag, or the colon belonged to a host:port prefix
        return image, "latest"
    return name, tag


def platform_of(descriptor: dict[str, Any]) -> str:
    platform = descriptor.get("platform") or {}
    parts = [platform.get("os", ""), platform.get("architecture", "")]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


def wanted(platform: str, platforms: Sequence[str]) -> bool:
    """`linux/arm64` matches `linux/arm64/v8`; no filter takes every platform."""
    return not platforms or any(platform.startswith(choice) for choice in platforms)


class Warmer:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        server: str,
        tally: Tally | None = None,
        watcher: Watcher | None = None,
    ) -> None:
        self._session = session
        self._server = server.rstrip("/")
        self._blobs = asyncio.Semaphore(BLOB_CONCURRENCY)
        self._tally = tally or Tally(images=0)
        self._watcher = watcher or Unwatched()

    async def warm(self, image: str, platforms: Sequence[str]) -> WarmReport:
        report = WarmReport(image)
        name, ref = split_image(image)
        try:
            await self._manifest(report, name, ref, platforms)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            report.errors.append(f"{image}: {type(exc).__name__}: {exc}")
        return report

    async def _manifest(
        self, report: WarmReport, name: str, ref: str, platforms: Sequence[str]
    ) -> None:
        url = f"{self._server}/v2/{name}/manifests/{ref}"
        headers = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        async with self._session.get(url, headers=headers) as response:
            if response.status != 200:
                report.errors.append(f"{name}:{ref}: manifest answered {response.status}")
                return
            document = json.loads(await response.read())
        report.manifests += 1
        children = [
            child["digest"]
            for child in document.get("manifests", [])
            if wanted(platform_of(child), platforms)
        ]
        for digest in children:
            await self._manifest(report, name, digest, platforms)
        blobs = [document["config"]] if isinstance(document.get("config"), dict) else []
        blobs += document.get("layers", [])
        self._tally.blobs += len(blobs)
        self._tally.bytes += sum(b["size"] for b in blobs if isinstance(b.get("size"), int))
        self._watcher.update(self._tally)
        await asyncio.gather(*(self._blob(report, name, blob["digest"]) for blob in blobs))

    async def _blob(self, report: WarmReport, name: str, digest: str) -> None:
        try:
            await self._fetch(report, name, digest)
        finally:
            self._tally.blobs_done += 1  # fetched or failed: either way no longer to do
            self._watcher.update(self._tally)

    async def _fetch(self, report: WarmReport, name: str, digest: str) -> None:
        async with self._blobs, self._session.get(f"{self._server}/v2/{name}/blobs/{digest}") as r:
            if r.status != 200:
                report.errors.append(f"{name}@{digest}: blob answered {r.status}")
                return
            async for chunk in r.content.iter_chunked(READ_CHUNK):
                report.bytes += len(chunk)
                self._tally.bytes_read += len(chunk)
                self._watcher.update(self._tally)
        report.blobs += 1


async def warm_images(
    server: str,
    images: Sequence[str],
    platforms: Sequence[str],
    watcher: Watcher | None = None,
) -> list[WarmReport]:
    """Warm each image in turn; the watcher hears of every step, and of each image's end."""
    watcher = watcher or Unwatched()
    tally = Tally(images=len(images))
    timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)
    ticker = asyncio.create_task(_tick(watcher, tally))
    reports: list[WarmReport] = []
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            warmer = Warmer(session, server, tally, watcher)
            for image in images:
                tally.images_started += 1
                started = time.monotonic()
                reports.append(await warmer.warm(image, platforms))
                tally.images_done += 1
                watcher.image_done(tally, reports[-1], time.monotonic() - started)
    except aiohttp.InvalidURL as exc:
        raise OperationError(f"not a URL: {exc}") from None
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        watcher.finish(tally)
    return reports


async def _tick(watcher: Watcher, tally: Tally) -> None:
    while True:
        await asyncio.sleep(TICK)
        watcher.update(tally)
