"""`mirror warm`: pull images through a running mirror so that it caches every piece of them.

A client pull caches only its own platform; warming walks an index or manifest list into every
platform asked for (all by default) and fetches each config and layer, reading and discarding the
bytes. Used before cutting a mirror off the network (docs/airgapped.md).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from mirror.errors import OperationError
from mirror.media_types import ALL_MANIFEST_TYPES

BLOB_CONCURRENCY = 4
READ_CHUNK = 1024 * 1024


@dataclass(slots=True)
class WarmReport:
    image: str
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    errors: list[str] = field(default_factory=list)


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
    def __init__(self, session: aiohttp.ClientSession, server: str) -> None:
        self._session = session
        self._server = server.rstrip("/")
        self._blobs = asyncio.Semaphore(BLOB_CONCURRENCY)

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
        await asyncio.gather(*(self._blob(report, name, blob["digest"]) for blob in blobs))

    async def _blob(self, report: WarmReport, name: str, digest: str) -> None:
        async with self._blobs, self._session.get(f"{self._server}/v2/{name}/blobs/{digest}") as r:
            if r.status != 200:
                report.errors.append(f"{name}@{digest}: blob answered {r.status}")
                return
            async for chunk in r.content.iter_chunked(READ_CHUNK):
                report.bytes += len(chunk)
        report.blobs += 1


async def warm_images(
    server: str, images: Sequence[str], platforms: Sequence[str]
) -> list[WarmReport]:
    timeout = aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            warmer = Warmer(session, server)
            return [await warmer.warm(image, platforms) for image in images]
    except aiohttp.InvalidURL as exc:
        raise OperationError(f"not a URL: {exc}") from None
