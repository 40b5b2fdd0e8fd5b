"""`mirror serve`: open the resources, listen, then say so; run until SIGTERM or SIGINT.

aiohttp's `run_app` prints its banner before it binds and turns every start-up failure into a
traceback. Here the app's resources open first (`AppRunner.setup`: the folder lock, the index,
the janitor), then the socket is bound (`TCPSite.start`), and only then is the banner logged.
Anything that stops the start on the operator's side (port in use, data folder unusable or in
use, an index from a newer mirror) is a StartupError: one line on stderr, exit status 2.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping

from aiohttp import web

from mirror import __version__
from mirror.cli import log_output
from mirror.cli.tls import ServerCertificate
from mirror.config import Config
from mirror.errors import StartupError
from mirror.web import access_log
from mirror.web.app import create_app
from mirror.web.middleware import OCIAppRunner

log = logging.getLogger("mirror.serve")

EXIT_STARTUP = 2  # as main.EXIT_CONFIG: restarting will not help
KEEPALIVE_TIMEOUT = 75.0  # what web.run_app used
SHUTDOWN_TIMEOUT = 60.0  # seconds running requests get to finish after SIGTERM


def serve(config: Config, log_level: str, settings: Mapping[str, str]) -> int:
    """Run the mirror; 0 after SIGTERM/SIGINT, EXIT_STARTUP (one line) when it cannot start.
    `settings` renames a config key in that line to the option that set it (`--listen`)."""
    log_output.configure(log_level, config.server.log_format)
    try:
        asyncio.run(_serve(config))
    except StartupError as exc:
        exc.setting = settings.get(exc.setting, exc.setting)
        print(f"mirror: {exc}", file=sys.stderr, flush=True)
        return EXIT_STARTUP
    return 0


async def _serve(config: Config) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_stop(signum: int) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    certificate: ServerCertificate | None = None

    def on_hangup() -> None:
        if certificate is None:
            log.warning(
                "SIGHUP received and ignored: no TLS certificate to reload;"
                " other settings need a restart"
            )
        else:
            certificate.reload("SIGHUP")

    # Before anything else: a SIGHUP during start-up must not kill the process either.
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_stop, signum)
    server = config.server
    if server.tls_cert is not None and server.tls_key is not None:
        certificate = ServerCertificate(server.tls_cert, server.tls_key)

    app = create_app(config)
    runner = OCIAppRunner(  # aiohttp's own error answers are OCI error bodies too
        app,
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        access_log_class=access_log.AccessLogger,
        access_log=logging.getLogger(access_log.ACCESS_LOGGER),
    )
    listening = False
    watching: asyncio.Task[None] | None = None
    try:
        await runner.setup()  # every resource's lifetime opens (cleanup_ctx), in order
        if not stop.is_set():
            await _listen(runner, config, certificate)
            listening = True
            _banner(config)
            if certificate is not None:
                watching = asyncio.create_task(certificate.watch(), name="tls-watch")
            await stop.wait()
        log.info(
            "stopping on %s: finishing requests (at most %.0fs)", received[0], SHUTDOWN_TIMEOUT
        )
    finally:
        if watching is not None:
            watching.cancel()
        await runner.cleanup()  # closes what opened, in reverse, whether or not setup finished
    if listening:
        log.info("stopped")


async def _listen(
    runner: web.AppRunner, config: Config, certificate: ServerCertificate | None
) -> None:
    server = config.server
    sites = [(server.host, server.port, "server.listen", certificate)]
    if config.admin.listen is not None:
        # Plain HTTP, for probes and Prometheus: bind it to loopback or keep it in-cluster.
        sites.append((*config.admin.listen, "admin.listen", None))
    for host, port, setting, tls in sites:
        # One app behind both sites: the gate middleware tells the ports apart.
        site = web.TCPSite(runner, host, port, ssl_context=None if tls is None else tls.context)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {_shown(host, port)}", setting, _cause(exc)
            ) from None


def _shown(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _banner(config: Config) -> None:
    server, storage = config.server, config.storage
    names = ", ".join(f"{u.name} → {u.url}" for u in config.upstreams)
    listen = _shown(server.host, server.port)
    scheme = "https" if server.tls_cert is not None else "http"
    fields = {
        "version": __version__,
        "listen": listen,
        "scheme": scheme,
        "data": str(storage.path),
        "upstreams": {u.name: str(u.url) for u in config.upstreams},
        "pid": os.getpid(),
    }
    shown = f"https://{listen}" if scheme == "https" else listen
    if config.admin.listen is not None:
        fields["admin_listen"] = _shown(*config.admin.listen)
        shown += f" (admin API, metrics and health checks on {fields['admin_listen']})"
    log.info(
        "mirror %s listening on %s, data in %s, upstreams: %s",
        __version__,
        shown,
        storage.path,
        names,
        extra={"fields": fields},
    )


def _cause(exc: OSError) -> str:
    """ "address already in use": the errno's text, not asyncio's wrapping of it."""
    if isinstance(exc, socket.gaierror) or not exc.errno or exc.errno < 0:
        text = exc.strerror or str(exc)
    else:
        text = os.strerror(exc.errno)
    return text[:1].lower() + text[1:]
