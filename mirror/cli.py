"""Command line: `mirror serve` (more commands join as operations grow)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from aiohttp import web

from mirror import __version__
from mirror.config import Config, ConfigError, load_config, parse_listen

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mirror", description="A pull-through registry mirror.")
    parser.add_argument("--version", action="version", version=f"mirror {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the mirror")
    serve.add_argument("--config", type=Path, help="TOML config file (default: built-in)")
    serve.add_argument("--listen", help="host:port to listen on (overrides server.listen)")
    serve.add_argument("--data", type=Path, help="data folder (overrides storage.path)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    return parser


def effective_config(args: argparse.Namespace) -> Config:
    config = load_config(args.config)
    if args.listen:
        host, port = parse_listen(args.listen, "--listen")
        config = replace(config, server=replace(config.server, host=host, port=port))
    if args.data:
        config = replace(config, storage=replace(config.storage, path=args.data))
    return config


def serve(config: Config) -> None:
    from mirror.app import create_app

    app = create_app(config)
    names = ", ".join(f"{u.name} → {u.url}" for u in config.upstreams)
    print(
        f"mirror {__version__} on {config.server.host}:{config.server.port}, "
        f"data in {config.storage.path}, upstreams: {names}",
        flush=True,
    )
    web.run_app(app, host=config.server.host, port=config.server.port, print=None, access_log=None)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        config = effective_config(args)
    except ConfigError as exc:
        print(f"mirror: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "serve":
        serve(config)
    return 0
