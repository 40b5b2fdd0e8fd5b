"""The operator's commands (stats, ls, purge, gc, verify) on a stopped mirror's data folder."""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from typing import Any

from mirror.assembly import DataFolder, open_data_folder
from mirror.cli.listing import PAGE_SIZE
from mirror.cli.progress import progress_printer
from mirror.config import Config
from mirror.errors import NameUnknown, OperationError
from mirror.metrics import Metrics
from mirror.reference import Digest, Tag, parse_repository
from mirror.stores.catalog import RepositoryPage, RepositorySummary
from mirror.upstream.client import UpstreamRegistry
from mirror.upstream.router import UpstreamRouter


async def run_offline(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Run stats/ls/purge/gc/verify on a stopped mirror's data folder."""
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
        if args.command == "ls":
            return await catalog_answer(args, config, data)
        if args.command == "verify":
            report = await janitor.verify(progress_printer())
            return {"checked": report.checked, "corrupt": report.corrupt, "busy": 0}
        return await _purge(args, config, data)


async def catalog_answer(
    args: argparse.Namespace, config: Config, data: DataFolder
) -> dict[str, Any]:
    """What `GET /admin/catalog[/REPOSITORY]` would answer, every page, read from the folder."""
    catalog = data.stores.catalog
    # The server's own routing of names (`alpine`, `ghcr.io/owner/tool`); it does no I/O.
    metrics = Metrics()
    router = UpstreamRouter([UpstreamRegistry(up, time.time, metrics) for up in config.upstreams])
    if args.repository is not None:
        target = router.route(args.repository, args.upstream)
        detail = await catalog.repository(target.upstream.name, target.repo)
        if detail is None:
            raise NameUnknown(f"repository {target.repo} is not cached from {target.upstream.name}")
        return detail.as_dict()
    if args.upstream is not None and router.get(args.upstream) is None:
        raise NameUnknown(f"no upstream named {args.upstream[:100]!r}")
    found: list[RepositorySummary] = []
    after = ("", "")
    while True:
        page = await catalog.repositories(
            PAGE_SIZE, upstream=args.upstream, prefix=args.prefix or "", after=after
        )
        found.extend(page.repositories)
        if page.next is None:
            return RepositoryPage(found, None).as_dict()
        after = (found[-1].upstream, found[-1].repository)


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
