"""The sandbox the clients run in reaches the mirror and nothing else."""

from __future__ import annotations

import sys

from support.mirror_process import MirrorProcess
from support.registry import Registry

from .netns import Sandbox

PROBE = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    socket.create_connection((host, port), timeout=3).close()
    print("connected")
except OSError as exc:
    print(type(exc).__name__, exc.errno)
"""


def probe(sandbox: Sandbox, host: str, port: int) -> str:
    return sandbox.run(sys.executable, "-c", PROBE, host, str(port)).strip()


def test_sandbox_has_only_loopback(
    sandbox: Sandbox, mirror: MirrorProcess, registry: Registry
) -> None:
    assert sandbox.links() == ["lo"]
    routes = sandbox.routes()
    assert " dev lo " in routes and "default" not in routes, routes
    # The mirror is reachable through the forwarder; the upstream (outside) is not.
    assert probe(sandbox, "127.0.0.1", mirror.port) == "connected"
    assert probe(sandbox, "127.0.0.1", registry.port).startswith("ConnectionRefusedError")
    # No route leaves the namespace: a public address is unreachable at once.
    outside = probe(sandbox, "192.0.2.1", 443)
    assert outside.startswith("OSError 101"), outside  # ENETUNREACH
