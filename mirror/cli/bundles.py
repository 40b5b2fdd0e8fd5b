"""The air-gap commands: `lock`, `export` (clients of a running mirror), `import` and
`verify --lock` (through the admin API with --server, or on a stopped data folder)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from mirror.assembly import open_data_folder
from mirror.cli.export import ExportTally, export_bundle
from mirror.cli.image_sets import ChosenImage, read_image_set
from mirror.cli.import_client import post_bundle, post_lock
from mirror.cli.lock import lock_images
from mirror.cli.warm_progress import human_bytes
from mirror.config import Config
from mirror.errors import OperationError
from mirror.upkeep.bundle_import import BundleImporter
from mirror.upkeep.lock_check import check_lock
from mirror.upkeep.lockfile import LockedImage, dump_lock, load_lock

REDRAW = 0.2  # seconds between redraws of the export's status line


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def read_lock(path: str) -> list[LockedImage]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise OperationError(f"cannot read {path}: {exc}") from None
    return load_lock(text, path)


def lock(args: argparse.Namespace) -> dict[str, Any]:
    try:
        chosen = read_image_set(args.images)
    except (OSError, UnicodeError, ValueError) as exc:
        raise OperationError(f"cannot read {args.images}: {exc}") from None
    if args.platform:  # the command line's platforms stand in for a file-wide line
        chosen = [
            image if image.platforms else ChosenImage(image.source, image.reference, args.platform)
            for image in chosen
        ]
    if not chosen:
        raise OperationError(f"{args.images} names no image")
    locked = lock_images(args.server, chosen, _say)
    Path(args.output).write_text(dump_lock(locked), encoding="utf-8")
    return {"images": len(locked), "bytes": sum(image.size for image in locked)}


def export(args: argparse.Namespace) -> dict[str, Any]:
    images = read_lock(args.lock)
    output = Path(args.output)
    started = time.monotonic()
    tally = export_bundle(args.server, images, output, _progress(len(images)))
    seconds = time.monotonic() - started
    _say(
        f"exported {tally.images} images: {tally.manifests} manifests, {tally.blobs} blobs, "
        f"{human_bytes(tally.bytes)} in {seconds:.1f}s to {output}"
    )
    return {**asdict(tally), "output": str(output)}


def _progress(total: int) -> Any:
    """On a terminal, one line redrawn in place; elsewhere a line per image."""
    terminal = sys.stderr.isatty()
    shown = {"at": 0.0, "images": 0}

    def show(tally: ExportTally) -> None:
        now = time.monotonic()
        if terminal and now - shown["at"] >= REDRAW:
            shown["at"] = now
            line = f"images {tally.images}/{total}  blobs {tally.blobs}  {human_bytes(tally.bytes)}"
            print(f"\r\x1b[K{line}", end="", file=sys.stderr, flush=True)
        elif not terminal and tally.images > shown["images"]:
            shown["images"] = tally.images
            _say(f"image {tally.images}/{total}: {tally.blobs} blobs, {human_bytes(tally.bytes)}")

    return show


def import_bundle(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    path = Path(args.bundle)
    if not path.exists():
        raise OperationError(f"{path}: no such file or directory")
    if args.server:
        return post_bundle(args.server, _token(args, config), path)
    return asyncio.run(_import_offline(path, config))


async def _import_offline(path: Path, config: Config) -> dict[str, Any]:
    async with open_data_folder(config) as data:
        stores = data.stores
        importer = BundleImporter(
            stores.index, stores.files, stores.keeper, stores.ledger, config, time.time
        )
        report = await importer.import_path(path)
    return asdict(report)


def verify_lock(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    images = read_lock(args.lock)
    if args.server:
        text = Path(args.lock).read_text(encoding="utf-8")
        return post_lock(args.server, _token(args, config), text)
    return asyncio.run(_verify_offline(images, config))


async def _verify_offline(images: list[LockedImage], config: Config) -> dict[str, Any]:
    async with open_data_folder(config) as data:
        missing = await check_lock(
            data.stores.metadata, data.stores.backend.size_of, config, images
        )
    return {"images": len(images), "missing": missing}


def _token(args: argparse.Namespace, config: Config) -> str | None:
    token: str | None = args.token or os.environ.get("MIRROR_ADMIN_TOKEN") or config.admin.token
    return token


def print_json(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))
