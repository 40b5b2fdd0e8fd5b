"""What aiohttp's HTTP parser refuses, against a real `mirror serve`: every answer is an OCI error
body (application/json, a 4xx), the connection closes, and the server keeps serving.

These requests never reach the app or its middlewares; `mirror serve` answers them through
middleware.OCIAppRunner (the in-process TestServer of the other suites uses aiohttp's runner).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes import FakeHub
from support.mirror_process import MirrorProcess, MirrorProcesses

# Each is refused by aiohttp's parser (llhttp, or the Python parser's own checks).
MALFORMED: dict[str, bytes] = {
    "control byte in the path": b"GET /v2/a\x01b/manifests/latest HTTP/1.1\r\nHost: m\r\n\r\n",
    "header without a colon": b"GET /v2/ HTTP/1.1\r\nBad Header\r\n\r\n",
    "space before the colon": b"GET /v2/ HTTP/1.1\r\nHost : m\r\n\r\n",
    "request line over the limit": b"GET /v2/" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
    "header over the limit": b"GET /v2/ HTTP/1.1\r\nX-Big: " + b"b" * 20000 + b"\r\n\r\n",
    "bad HTTP version": b"GET /v2/ HTTP/9.Z\r\nHost: m\r\n\r\n",
    "two content lengths": (
        b"POST /v2/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "bad chunk size": (
        b"POST /v2/ HTTP/1.1\r\nHost: m\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n"
    ),
    "a TLS hello on the port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
    "method with a control byte": b"G\x00ET /v2/ HTTP/1.1\r\n\r\n",
    "CONNECT to a host": b"CONNECT example.invalid:443 HTTP/1.1\r\nHost: x\r\n\r\n",
}


async def exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes; the status, headers and body (by its Content-Length) of the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in filter(None, lines):
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 10)
    finally:
        writer.close()
    return int(status_line.split(" ", 2)[1]), headers, body


@pytest.fixture
def served(hub: FakeHub, tmp_path: Path, mirror_processes: MirrorProcesses) -> MirrorProcess:
    config = {
        "storage": {"path": str(tmp_path / "data")},
        "upstreams": [{"name": "docker.io", "url": hub.url}],
    }
    return mirror_processes(config=config)


@pytest.mark.parametrize("name", list(MALFORMED))
async def test_a_request_the_parser_refuses_gets_an_oci_error(
    served: MirrorProcess, session: aiohttp.ClientSession, name: str
) -> None:
    status, headers, body = await exchange(served.port, MALFORMED[name])
    assert 400 <= status < 500, (status, body[:200])
    assert headers["content-type"].split(";")[0] == "application/json", headers
    assert headers["docker-distribution-api-version"] == "registry/2.0"
    document: Any = json.loads(body)
    [error] = document["errors"]
    assert set(error) == {"code", "message", "detail"} and error["code"], error
    assert b"aaaa" not in body and b"bbbb" not in body  # a refused line is not echoed back
    async with session.get(f"{served.url}/v2/") as resp:  # and the server keeps serving
        assert resp.status == 200


async def test_garbage_on_the_port_leaves_the_server_healthy(
    served: MirrorProcess, session: aiohttp.ClientSession
) -> None:
    answers = await asyncio.gather(*(exchange(served.port, raw) for raw in MALFORMED.values()))
    assert {status for status, _, _ in answers} <= set(range(400, 500)), answers
    async with session.get(f"{served.url}/healthz") as resp:
        assert resp.status == 200
    assert served.running
    output = "\n".join(served.stderr_lines())
    assert "Traceback" not in output and " ERROR " not in output, output
