"""One test per hostile-input finding: the Range rule on hits and fills, strict numbers, OCI
bodies for aiohttp's own refusals, escaped log lines, malformed HTTP logged once at INFO,
invalid tags as 404 MANIFEST_UNKNOWN, and an upstream refusal as 403 DENIED."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub
from fakes.client import oci_error_code
from support.mirror_process import MirrorProcesses
from yarl import URL

from mirror.cli.log_output import JsonFormatter, TextFormatter
from mirror.config import parse_config
from mirror.web.access_log import ACCESS_LOGGER, SERVER_LOGGER, AccessLogger
from mirror.web.app import create_app

REPO = "library/alpine"
SIZE = 5000

ServerFactory = Callable[..., Awaitable[TestServer]]


def raw_url(server: TestServer, path: str) -> URL:
    """Sent exactly as written: no client-side normalisation of escapes."""
    return URL(f"http://{server.host}:{server.port}{path}", encoded=True)


async def raw_exchange(port: int, data: bytes) -> bytes:
    """Write bytes that are not (quite) HTTP and read until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


# -- Range: one rule on a hit and a fill ------------------------------------------------------


async def blob_answer(
    session: aiohttp.ClientSession, url: str, ranges: list[str]
) -> tuple[str, int, str | None, str, bytes]:
    headers = [("Range", value) for value in ranges]
    async with session.get(url, headers=headers) as resp:
        body = await resp.read()
        return (
            resp.headers["X-Cache"],
            resp.status,
            resp.headers.get("Content-Range"),
            resp.content_type,
            body,
        )


@pytest.mark.parametrize(
    ("ranges", "status", "part"),
    [
        (["bytes=10-19"], 206, (10, 20)),
        (["bytes=-5"], 206, (SIZE - 5, SIZE)),
        (["bytes=4990-99999"], 206, (4990, SIZE)),
        (["bytes=0-1,5-6"], 200, None),  # several ranges: the whole blob
        (["bytes=0-1", "bytes=5-6"], 200, None),  # two Range lines: several ranges
        (["items=0-1"], 200, None),  # another unit
        (["bytes=abc"], 200, None),  # unparsable
        (["bytes=\u00b2-"], 200, None),  # not ASCII digits
        (["bytes=-0"], 416, None),  # an empty suffix: the hit sent a 206 with everything
        (["bytes=5-3"], 416, None),  # inverted
        ([f"bytes={SIZE}-"], 416, None),  # past the end
    ],
)
async def test_the_range_rule_is_the_same_on_a_fill_and_a_hit(
    hub: FakeHub,
    mirror: TestServer,
    session: aiohttp.ClientSession,
    ranges: list[str],
    status: int,
    part: tuple[int, int] | None,
) -> None:
    data = hub.make_blob(SIZE, seed=7)
    digest = hub.add_blob(REPO, data)
    url = str(mirror.make_url(f"/v2/{REPO}/blobs/{digest}"))
    fill = await blob_answer(session, url, ranges)
    # The fill goes on after a ranged answer (or starts over after a 416): wait until stored.
    deadline = asyncio.get_running_loop().time() + 10
    while (await blob_answer(session, url, []))[0] != "hit":
        assert asyncio.get_running_loop().time() < deadline, "the blob was never stored"
        await asyncio.sleep(0.01)
    hit = await blob_answer(session, url, ranges)
    assert fill[0] == "miss" and hit[0] == "hit"
    assert fill[1:4] == hit[1:4], (fill[1:4], hit[1:4])
    _, answered, content_range, content_type, body = hit
    assert answered == status
    if status == 416:
        assert content_range == f"bytes */{SIZE}"
        assert content_type == "application/json"
        assert json.loads(body)["errors"][0]["code"] == "RANGE_INVALID"
        assert json.loads(fill[4]) == json.loads(body)
        return
    start, end = part or (0, SIZE)
    assert body == fill[4] == data[start:end]
    assert content_range == (None if part is None else f"bytes {start}-{end - 1}/{SIZE}")


async def test_preconditions_a_fill_ignores_do_not_make_a_hit_answer_412(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    data = hub.make_blob(SIZE, seed=8)
    digest = hub.add_blob(REPO, data)
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    async with session.get(url) as resp:
        assert await resp.read() == data
    odd = {"If-Match": '"nope"', "If-Unmodified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}
    for name, value in odd.items():
        async with session.get(url, headers={name: value, "Range": "bytes=0-9"}) as resp:
            assert (resp.status, await resp.read()) == (206, data[:10]), name


# -- numbers, routes and references -------------------------------------------------------------


@pytest.mark.parametrize("n", ["\u00b2", "\u0663", "\uff11", "-1", "+1", "1e3", " 1", ""])
async def test_a_page_size_that_is_not_ascii_digits_is_400(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, n: str
) -> None:
    hub.add_image(REPO, "1", [b"layer"])
    async with session.get(mirror.make_url(f"/v2/{REPO}/tags/list"), params={"n": n}) as resp:
        assert resp.status == 400, n
        assert await oci_error_code(resp) == "PAGINATION_NUMBER_INVALID"
    assert hub.count() == 0


@pytest.mark.parametrize(
    ("n", "sent"), [("9" * 5000, "10000"), ("0" * 5000 + "2", "2"), ("10001", "10000")]
)
async def test_a_huge_page_size_is_clamped(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, n: str, sent: str
) -> None:
    for tag in ("1", "2", "3"):
        hub.add_image(REPO, tag, [b"layer " + tag.encode()])
    async with session.get(mirror.make_url(f"/v2/{REPO}/tags/list"), params={"n": n}) as resp:
        assert resp.status == 200
        assert (await resp.json())["tags"] == ["1", "2", "3"][: int(sent)]
    [asked] = hub.records(server="registry", path_contains="/tags/list", status=200)
    assert asked.query["n"] == sent


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("POST", "/v2/", 405, "UNSUPPORTED"),
        ("DELETE", "/v2/", 405, "UNSUPPORTED"),
        ("GET", "/v2/alpine%0a/manifests/latest", 400, "NAME_INVALID"),
        ("GET", "/v2/alpine/manifests/latest%0a", 404, "MANIFEST_UNKNOWN"),
        ("GET", "/nothing%0ahere", 404, "NOT_FOUND"),
        ("POST", "/healthz", 405, "UNSUPPORTED"),
    ],
)
async def test_refusals_are_oci_errors(
    mirror: TestServer,
    session: aiohttp.ClientSession,
    method: str,
    path: str,
    status: int,
    code: str,
) -> None:
    async with session.request(method, raw_url(mirror, path)) as resp:
        assert resp.status == status
        assert resp.content_type == "application/json"
        assert await oci_error_code(resp) == code


@pytest.mark.parametrize("reference", ["-tag", ".tag", "t" * 129, "a%0a", "caf%C3%A9"])
async def test_a_reference_that_is_not_a_valid_tag_is_manifest_unknown(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession, reference: str
) -> None:
    path = f"/v2/{REPO}/manifests/{reference}"
    async with session.get(raw_url(mirror, path)) as resp:
        assert resp.status == 404
        assert await oci_error_code(resp) == "MANIFEST_UNKNOWN"
    async with session.head(raw_url(mirror, path)) as resp:
        assert resp.status == 404
    async with session.get(raw_url(mirror, f"/v2/{REPO}/manifests/sha256:xyz")) as resp:
        assert resp.status == 400
        assert await oci_error_code(resp) == "DIGEST_INVALID"
    assert hub.count() == 0


async def test_an_upstream_refusal_is_403_denied_without_a_challenge(
    hub: FakeHub, mirror: TestServer, session: aiohttp.ClientSession
) -> None:
    image = hub.add_image("library/private", "v1", [b"secret layer"])
    hub.require_credentials("library/private", "alice", "s3cret-pw")
    for path in ("/manifests/v1", f"/blobs/{image.layer_digests[0]}", "/tags/list"):
        url = mirror.make_url(f"/v2/library/private{path}")
        async with session.get(url) as resp:
            assert resp.status == 403, path
            assert "WWW-Authenticate" not in resp.headers
            body = await resp.json()
            assert body["errors"][0]["code"] == "DENIED"
            assert "authentication required" not in json.dumps(body)  # the upstream's text
        async with session.head(url) as resp:
            assert resp.status == 403, path


# -- the log ------------------------------------------------------------------------------------


class Lines(logging.Handler):
    """Formatted records, as `mirror serve` prints them in each format."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> list[str]:
        return [TextFormatter().format(record) for record in self.records]

    def json(self) -> list[str]:
        return [JsonFormatter().format(record) for record in self.records]


@pytest.fixture
def lines() -> Any:
    handler = Lines()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


async def logged_mirror(
    mirror_config: dict[str, Any], clock: FakeClock, aiohttp_server: ServerFactory
) -> TestServer:
    app = create_app(parse_config(mirror_config), clock=clock)
    return await aiohttp_server(
        app, access_log_class=AccessLogger, access_log=logging.getLogger(ACCESS_LOGGER)
    )


async def test_a_control_character_in_a_path_cannot_forge_a_log_line(
    mirror_config: dict[str, Any],
    clock: FakeClock,
    aiohttp_server: ServerFactory,
    session: aiohttp.ClientSession,
    lines: Lines,
) -> None:
    mirror = await logged_mirror(mirror_config, clock, aiohttp_server)
    forged = "/v2/x%0a2026-01-01%2000:00:00,000%20INFO%20mirror.access:%20GET%20/v2/%0d%1b[2J"
    async with session.get(raw_url(mirror, forged)) as resp:
        assert resp.status == 404
    assert len([r for r in lines.records if r.name == ACCESS_LOGGER]) == 1
    for line in (*lines.text(), *lines.json()):
        assert "\n" not in line and "\r" not in line and "\x1b" not in line, line
    [text] = [line for line in lines.text() if "mirror.access" in line]
    assert "/v2/x\\x0a2026-01-01 00:00:00,000 INFO" in text and "\\x0d\\x1b[2J" in text
    assert json.loads(lines.json()[-1])["path"].startswith("/v2/x\\x0a2026")


async def test_a_malformed_request_is_logged_once_at_info_without_a_traceback(
    mirror_config: dict[str, Any],
    clock: FakeClock,
    aiohttp_server: ServerFactory,
    lines: Lines,
) -> None:
    mirror = await logged_mirror(mirror_config, clock, aiohttp_server)
    assert mirror.port is not None
    answer = await raw_exchange(mirror.port, b"GET /v2/ HTTP/1.1\r\nBad Header\r\n\r\n")
    assert answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n")[0]
    server = [r for r in lines.records if r.name == SERVER_LOGGER]
    assert [(r.levelno, r.exc_info) for r in server] == [(logging.INFO, None)]
    assert "malformed request from 127.0.0.1 refused (BadHttpMessage)" in server[0].getMessage()
    info = [r for r in lines.records if r.levelno >= logging.INFO and r.name != "mirror.upkeep"]
    assert info == server  # the access line of a request the app never saw is DEBUG
    for line in lines.text():
        assert "\n" not in line


@pytest.mark.server_errors_expected
async def test_a_real_crash_is_still_an_error_with_its_traceback(
    mirror_config: dict[str, Any],
    clock: FakeClock,
    aiohttp_server: ServerFactory,
    session: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The filter only quiets what the parser refuses: a handler that escapes every middleware
    (here, one with no middleware at all) is still logged at ERROR, as conftest's
    no_unhandled_server_errors expects."""
    create_app(parse_config(mirror_config), clock=clock)  # installs the filter

    async def crash(request: web.Request) -> web.Response:
        raise RuntimeError("a real crash")

    bare = web.Application()
    bare.router.add_get("/", crash)
    server = await aiohttp_server(bare)
    async with session.get(server.make_url("/")) as resp:
        assert resp.status == 500
    [record] = [r for r in caplog.get_records("call") if r.name == SERVER_LOGGER]
    assert record.levelno == logging.ERROR and record.exc_info is not None


async def test_mirror_serve_logs_a_forged_path_and_garbage_on_one_line_each(
    hub: FakeHub,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    mirror_processes: MirrorProcesses,
) -> None:
    """The real process, text format: the formatter of `mirror serve` escapes, and garbage on
    the port is one INFO line with no traceback."""
    config = {
        "storage": {"path": str(tmp_path / "data")},
        "upstreams": [{"name": "docker.io", "url": hub.url}],
    }
    proc = mirror_processes(config=config)  # waits (blocking) for /healthz only
    try:
        url = URL(f"{proc.url}/v2/x%0aFORGED%20INFO%20line/manifests/latest", encoded=True)
        async with session.get(url) as resp:
            assert resp.status == 400
        await raw_exchange(proc.port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        await raw_exchange(proc.port, b"GET /v2/ HTTP/1.1\r\nBad Header\r\n\r\n")
    finally:
        proc.stop()
    output = proc.stderr_lines()
    assert not [line for line in output if line.startswith("FORGED")], output
    assert any("/v2/x\\x0aFORGED INFO line/manifests/latest 400" in line for line in output)
    refused = [line for line in output if "malformed request" in line]
    assert len(refused) == 1 and " INFO aiohttp.server: " in refused[0], output
    assert "Traceback" not in "\n".join(output) and " ERROR " not in "\n".join(output)
