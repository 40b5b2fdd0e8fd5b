"""Command line: serve, and the operator's stats / purge / gc / verify."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from mirror import __version__
from mirror.cli.admin_client import admin_call, call_server, is_long
from mirror.cli.listing import from_server, render
from mirror.cli.offline import run_offline
from mirror.cli.progress import progress_printer
from mirror.config import Config, load_config, parse_listen
from mirror.errors import ConfigError, DataFolderLocked, MirrorError, OperationError, StartupError

EXIT_FAILED = 1
EXIT_CONFIG = 2  # a config or start-up error: restarting will not help (systemd does not)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirror", description="A pull-through registry mirror.")
    parser.add_argument("--version", action="version", version=f"mirror {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the mirror")
    _config_options(serve)
    serve.add_argument("--listen", help="host:port to listen on (overrides server.listen)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])

    for name, text in (
        ("stats", "storage and cache statistics"),
        ("gc", "evict down to storage.max_size (offline: also reconcile rows and files)"),
        ("verify", "re-hash every stored blob; remove corrupt ones (exit 1 if any)"),
    ):
        _target_options(commands.add_parser(name, help=text))
    _bundle_commands(commands)
    warm = commands.add_parser("warm", help="pull images through a running mirror to cache them")
    warm.add_argument("--server", required=True, help="the mirror's URL")
    warm.add_argument(
        "--platform",
        action="append",
        default=[],
        help="os/arch[/variant] to cache from indexes (repeatable; default: every platform)",
    )
    warm.add_argument(
        "-f",
        "--file",
        action="append",
        default=[],
        help="read images from FILE, one a line (# comments; - for stdin; repeatable)",
    )
    warm.add_argument("images", nargs="*", help="e.g. alpine:3.19, ghcr.io/owner/tool@sha256:…")
    ls = commands.add_parser("ls", help="list cached repositories, or one repository's tags")
    _target_options(ls)
    ls.add_argument("repository", nargs="?", help="a repository: list its tags")
    ls.add_argument("--upstream", help="only this upstream's (with REPOSITORY: default the first)")
    ls.add_argument("--prefix", help="only repositories whose name starts with this")
    ls.add_argument("--json", action="store_true", help="the admin API's JSON, every page")
    purge = commands.add_parser("purge", help="forget cached content")
    _target_options(purge)
    what = purge.add_mutually_exclusive_group(required=True)
    what.add_argument("--all", action="store_true", help="everything")
    what.add_argument(
        "--repository",
        help="a repository's tags and links, and what only they hold (with --tag: one tag)",
    )
    what.add_argument("--blob", help="a blob by digest")
    what.add_argument(
        "--manifest", help="a manifest by digest, the tags pointing at it, and what only it holds"
    )
    purge.add_argument("--tag", help="with --repository: only this tag")
    purge.add_argument("--upstream", help="upstream name (default: the first)")
    purge.add_argument(
        "--dry-run", action="store_true", help="report what would be removed, remove nothing"
    )
    return parser


def _bundle_commands(commands: Any) -> None:
    """lock, export, import, and verify's --lock (docs/airgapped.md)."""
    verify = commands.choices["verify"]
    verify.add_argument("--lock", help="instead: is every image of this lock complete here?")
    lock = commands.add_parser("lock", help="pin an image set's tags to digests, via a mirror")
    lock.add_argument("images", help="images.txt: one image a line (- for stdin)")
    lock.add_argument("-o", "--output", required=True, help="the lock file to write")
    lock.add_argument("--server", required=True, help="the mirror's URL")
    lock.add_argument(
        "--platform",
        action="append",
        default=[],
        help="os/arch[/variant] to keep from indexes, for lines without their own",
    )
    export = commands.add_parser("export", help="write locked images as an OCI layout bundle")
    export.add_argument("--lock", required=True, help="the lock file (mirror lock)")
    export.add_argument("-o", "--output", required=True, help="bundle.tar, or DIR/")
    export.add_argument("--server", required=True, help="the mirror's URL")
    imported = commands.add_parser("import", help="add an OCI layout bundle to the cache")
    _target_options(imported)
    imported.add_argument("bundle", help="a tar (mirror export, skopeo oci-archive) or a DIR")


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file (default: built-in)")
    parser.add_argument("--data", type=Path, help="data folder (overrides storage.path)")


def _target_options(parser: argparse.ArgumentParser) -> None:
    _config_options(parser)
    parser.add_argument("--server", help="a running mirror's URL: use its admin API")
    parser.add_argument(
        "--token", help="admin token (default: $MIRROR_ADMIN_TOKEN, then [admin] token)"
    )


def effective_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if getattr(args, "listen", None):
        host, port = parse_listen(args.listen, "--listen")
        config = replace(config, server=replace(config.server, host=host, port=port))
    if args.data:
        config = replace(config, storage=replace(config.storage, path=args.data))
    return config


def renamed_settings(args: argparse.Namespace) -> dict[str, str]:
    """The options that overrode a config key, to be named in an error instead of the key."""
    renames = {"server.listen": "--listen"} if getattr(args, "listen", None) else {}
    if args.data:
        renames["storage.path"] = "--data"
    return renames


def operate(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Run stats/ls/purge/gc/verify through the admin API (--server) or on the data folder."""
    if args.server:
        token = args.token or os.environ.get("MIRROR_ADMIN_TOKEN") or config.admin.token
        if args.command == "ls":
            return from_server(args.server, token, args.repository, args.upstream, args.prefix)
        method, path, query = admin_call(args)
        long = is_long(args)
        progress = progress_printer() if long else None
        return call_server(args.server, token, method, path, query, as_job=long, progress=progress)
    return asyncio.run(run_offline(args, config))


def warm(args: argparse.Namespace) -> int:
    from mirror.cli.warm import read_image_list, warm_images
    from mirror.cli.warm_progress import watcher_for

    images = list(args.images)
    for source in args.file:
        try:
            images += read_image_list(source)
        except (OSError, UnicodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            print(f"mirror warm: cannot read {source}: {reason}", file=sys.stderr)
            return EXIT_CONFIG
    if not images:
        print("mirror warm: no images to warm: name some, or give -f FILE", file=sys.stderr)
        return EXIT_CONFIG
    try:
        reports = asyncio.run(warm_images(args.server, images, args.platform, watcher_for()))
    except OperationError as exc:
        print(f"mirror warm: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps([asdict(report) for report in reports], indent=2))
    return EXIT_FAILED if any(report.errors for report in reports) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "warm":  # a client of a running mirror: no config of its own
        return warm(args)
    if args.command in ("lock", "export"):  # clients of a running mirror too
        return _client_command(args)
    try:
        config = effective_config(args)
    except ConfigError as exc:
        print(f"mirror: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "serve":
        from mirror.cli.serve import serve  # aiohttp.web is imported only to serve

        return serve(config, args.log_level, renamed_settings(args))
    try:
        result = _bundle_operation(args, config) or operate(args, config)
    except StartupError as exc:
        exc.setting = renamed_settings(args).get(exc.setting, exc.setting)
        hint = "; stop it, or use --server" if isinstance(exc, DataFolderLocked) else ""
        print(f"mirror {args.command}: {exc}{hint}", file=sys.stderr)
        return EXIT_CONFIG
    except (OperationError, MirrorError) as exc:
        print(f"mirror {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.command == "ls" and not args.json:
        print(render(result, args.repository))
        return 0
    print(json.dumps(result, indent=2))
    if args.command == "verify" and (result.get("corrupt") or result.get("missing")):
        for line in result.get("missing") or []:
            print(f"mirror verify: {line}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def _client_command(args: argparse.Namespace) -> int:
    from mirror.cli import bundles

    run = bundles.lock if args.command == "lock" else bundles.export
    try:
        result = run(args)
    except OperationError as exc:
        print(f"mirror {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    bundles.print_json(result)
    return 0


def _bundle_operation(args: argparse.Namespace, config: Config) -> dict[str, Any] | None:
    """import, and verify --lock; None for the other commands."""
    from mirror.cli import bundles

    if args.command == "import":
        return bundles.import_bundle(args, config)
    if args.command == "verify" and args.lock:
        return bundles.verify_lock(args, config)
    return None
