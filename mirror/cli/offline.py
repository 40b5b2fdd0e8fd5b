"""The operator's commands (stats, purge, gc, verify) on a stopped mirror's data folder."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from mirror.assembly import DataFolder, open_data_folder
from mirror.cli.progress import progress_printer
from mirror.config import Config
from mirror.errors import OperationError
from mirror.reference import Digest, Tag, parse_repository


async def run_offline(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Run stats/purge/gc/verify on a stopped mirror's data folder."""
    async with open_data_folder(config) as data:
        janitor, metadata, ledger = data.upkeep.janitor, data.stores.metadata, data.stores.ledger
        if args.command == "stats":
            return {
                "storage": {"bytes": ledger.bytes, "blobs": ledger.blobs},
                "manifests": await metadata.count("manifests"),
                "tags": await metadata.count("tags"),
            }
        if args.command == "gc":
            reconciled = await janitor.reconcile()
            blobs, freed = await janitor.evict()
            return {
                "reconciled": asdict(reconciled),
                "evicted_blobs": blobs,
                "evicted_bytes": freed,
            }
        if args.command == "verify":
            report = await janitor.verify(progress_printer())
            return {"checked": report.checked, "corrupt": report.corrupt, "busy": 0}
        return await _purge(args, config, data)


async def _purge(args: argparse.Namespace, config: Config, data: DataFolder) -> dict[str, Any]:
    purge = data.upkeep.purge
    if args.all:
        report = await purge.everything(args.dry_run)
    elif args.blob:
        report = await purge.blob(Digest.parse(args.blob), args.dry_run)
    elif args.manifest:
        report = await purge.manifest(Digest.parse(args.manifest), args.dry_run)
    else:
        upstream = next((u for u in config.upstreams if u.name == (args.upstream or u.name)), None)
        if upstream is None:
            raise OperationError(f"no upstream named {args.upstream!r}")
        repo = parse_repository(args.repository, upstream.is_docker_hub)
        tag = Tag.parse(args.tag).name if args.tag else None
        report = await purge.repository(upstream.name, repo, tag, args.dry_run)
    result: dict[str, Any] = report.as_dict()
    return result
