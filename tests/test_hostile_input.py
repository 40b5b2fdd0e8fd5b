"""A corpus of hostile requests, sent over raw sockets to a mirror on the fake hub.

Seeded and reproducible: odd methods, paths with encoded control characters, unicode and huge
segments, odd `n`/`last`/`ns`, odd Range/Accept/precondition headers, and some bytes that are
not HTTP at all. Some content is cached first and some is not, so both hits and fills answer
ranges. Whatever arrives: no 5xx, every 4xx under /v2/ an OCI JSON error body, and no log line
that a control character could split or forge.

`MIRROR_HOSTILE_REQUESTS=100000` runs a larger corpus; `MIRROR_HOSTILE_SEED` picks another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
import unicodedata
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web import Application
from fakes import FakeClock, FakeHub
from fakes.oci import ALL_MANIFEST_TYPES, sha256_digest

from mirror.cli import log_output
from mirror.config import parse_config
from mirror.web.access_log import ACCESS_LOGGER, AccessLogger
from mirror.web.app import create_app

REQUESTS = int(os.environ.get("MIRROR_HOSTILE_REQUESTS", "10000"))
SEED = int(os.environ.get("MIRROR_HOSTILE_SEED", "20261201"))
CONNECTIONS = 16
# A request (or garbage) must be answered, or the connection closed, within this.
ANSWER_TIMEOUT = 15.0
# Below aiohttp's 8,190-byte limit for the request line, so these still parse as HTTP.
HUGE_SEGMENT = 7000
UNCACHED_BLOBS = 40

REPO = "library/alpine"
TAG = "3.19"


# -- what the corpus is made of ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Probe:
    """One request as bytes on the wire. `kind` is "http" for a request the app answers,
    "refused" for a request aiohttp's HTTP parser refuses before any route exists (a method
    token it does not know, a request line over its 8,190-byte limit), "garbage" for bytes
    that are not HTTP: the last two are answered 400 (or the connection is closed)."""

    raw: bytes
    method: str
    target: str
    kind: str = "http"

    @property
    def http(self) -> bool:
        return self.kind == "http"


@dataclass(slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool


@dataclass(frozen=True, slots=True)
class Content:
    """What the hub holds and the mirror has cached (or not) before the corpus runs."""

    manifest_digest: str
    cached_blobs: tuple[str, ...]
    uncached_blobs: tuple[str, ...]
    sizes: dict[str, int]


# The HTTP parser aiohttp uses (llhttp) knows a fixed set of methods, in upper case only, and
# takes CONNECT only with an authority ("host:port"), as RFC 9110 says.
UNKNOWN_METHODS = frozenset({"FOO", "get", "Head", "PRI", "X" * 40})
LINE_LIMIT = 8190
CONTROL = [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\u2028", "\u2029"]
UNICODE = ["é", "ß", "\u00b2", "\u0663", "\uff11", "\u202e", "\ufeff", "😀", "\ufffd", "\uff41"]
ODD_METHODS = [
    "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PROPFIND", "MKCOL",
    "LOCK", "FOO", "get", "Head", "M-SEARCH", "PRI", "X" * 40,
]  # fmt: skip
NUMBERS = [
    # Not "0": the fake hub's tag list fails on n=0 (an IndexError of the fake, not the mirror).
    "", "1", "2", "10", "100", "1000", "99999999999999999999", "-1", "+1", " 1", "1 ",
    "1e3", "0x10", "1.5", "\u00b2", "\u0663", "\uff11", "\u0966", "1\n", "9" * 5000,
    "0" * 5000 + "1", "9" * 4301, "abc", "%", "%00", "NaN", "∞",
]  # fmt: skip
RANGES = [
    "bytes=0-0", "bytes=0-99", "bytes=10-", "bytes=-100", "bytes=-0", "bytes=-1", "bytes=0-",
    "bytes=5-3", "bytes=0-1,5-6", "bytes=0-1, 4-", "bytes=-5,-3", "items=0-1", "bytes=",
    "bytes=-", "bytes", "bytes=a-b", "bytes=1.5-2", "BYTES=0-1", "bytes = 0-1",
    "bytes=\u0660-\u0663", "bytes=\u00b2-", "bytes=0-" + "9" * 5000, "bytes=" + "9" * 5000 + "-",
    "bytes=-" + "9" * 5000, "bytes=999999999999999999999-", "bytes=0-999999999999999999999",
    "bytes=0-1;x", "bytes=0x0-0x10", "bytes=+1-2", ",", "bytes=0-0," * 200,
]  # fmt: skip
ACCEPTS = [
    "*/*", "application/json", "text/html", "application/vnd.oci.image.index.v1+json",
    ", ".join(ALL_MANIFEST_TYPES), "", ",,,", ";;;", "é/ü", "application/" + "x" * 5000,
    "*/*;q=abc", "application/vnd.oci.image.manifest.v1+json;q=0",
]  # fmt: skip
PRECONDITIONS = [
    ("If-None-Match", '"x"'), ("If-None-Match", "*"), ("If-Match", '"nope"'), ("If-Match", "*"),
    ("If-Modified-Since", "Thu, 01 Jan 2099 00:00:00 GMT"), ("If-Range", '"x"'),
    ("If-Range", "Thu, 01 Jan 1970 00:00:00 GMT"), ("If-Unmodified-Since", "garbage"),
    ("If-Unmodified-Since", "Thu, 01 Jan 1970 00:00:00 GMT"),
]  # fmt: skip
GARBAGE = [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),  # a TLS hello
    b"SSH-2.0-OpenSSH_9.6\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"GET /v2/\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/ HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /v2/" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX: " + b"v" * 10_000 + b"\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n",
    b"\r\n\r\n\r\n",  # blank lines before a request line are allowed: answered only at EOF
    b"GET\r\n\r\n",
    b"G\xc3\x89T /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
]


def encode(text: str, rng: random.Random) -> str:
    """Percent-encode what may not appear raw in a request target (sometimes more)."""
    out = []
    for char in text:
        if char.isascii() and (char.isalnum() or char in "/-._~:@!$&'()*+,;=") and char != "%":
            out.append(f"%{ord(char):02X}" if rng.random() < 0.02 else char)
        else:
            out.append("".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass")))
    return "".join(out)


class Corpus:
    """A seeded generator of hostile requests against the content in `Content`."""

    def __init__(self, seed: int, content: Content, host: str) -> None:
        self.rng = random.Random(seed)
        self.content = content
        self.host = host

    def weird_text(self) -> str:
        rng = self.rng
        kind = rng.randrange(7)
        if kind == 0:
            return rng.choice(CONTROL)
        if kind == 1:
            return rng.choice(UNICODE)
        if kind == 2:
            return "a" * rng.choice([300, 1000, HUGE_SEGMENT])
        if kind == 3:
            return "".join(rng.choice(CONTROL + UNICODE + list("az09./-_:%")) for _ in range(8))
        if kind == 4:
            return rng.choice(["..", ".", "", "//", "%", "%zz", "\\", "?", "#"])
        if kind == 5:
            return "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 12)))
        return rng.choice(["\ud800", "\udfff"])  # lone surrogates, sent as bytes

    def mutate(self, text: str) -> str:
        rng = self.rng
        if rng.random() < 0.4:
            return text
        position = rng.randrange(len(text) + 1)
        weird = self.weird_text()
        if rng.random() < 0.5:
            return text[:position] + weird + text[position:]
        return weird if rng.random() < 0.3 else text + weird

    def name(self) -> str:
        return self.mutate(self.rng.choice([REPO, "alpine", "docker.io/library/alpine", "x/y/z"]))

    def blob_ref(self) -> str:
        rng = self.rng
        pick = rng.random()
        if pick < 0.45:
            return rng.choice(self.content.cached_blobs)
        if pick < 0.6:
            return rng.choice(self.content.uncached_blobs)
        return self.mutate(rng.choice([sha256_digest(b"unknown"), "sha256:" + "a" * 64, "md5:0"]))

    def manifest_ref(self) -> str:
        choices = [TAG, "latest", self.content.manifest_digest, "sha256:xyz", "-tag", "t" * 129]
        return self.mutate(self.rng.choice(choices))

    def path(self) -> tuple[str, str]:
        """(the path as text, which endpoint it aims at)."""
        rng = self.rng
        kind = rng.choices(
            ["blob", "manifest", "tags", "root", "v2junk", "other"], [40, 25, 15, 5, 10, 5]
        )[0]
        if kind == "blob":
            return f"/v2/{self.name()}/blobs/{self.blob_ref()}", kind
        if kind == "manifest":
            return f"/v2/{self.name()}/manifests/{self.manifest_ref()}", kind
        if kind == "tags":
            return f"/v2/{self.name()}/tags/list", kind
        if kind == "root":
            return self.mutate("/v2/"), kind
        if kind == "v2junk":
            return "/v2/" + self.mutate(rng.choice(["_catalog", "a/b/c", "x/blobs/", "/"])), kind
        return self.mutate(rng.choice(["/", "/healthz", "/v2", "/v1/", "/admin/stats"])), kind

    def query(self, kind: str) -> str:
        rng = self.rng
        params: list[tuple[str, str]] = []
        if kind == "tags" or rng.random() < 0.1:
            if rng.random() < 0.8:
                params.append(("n", rng.choice(NUMBERS)))
            if rng.random() < 0.4:
                params.append(("last", rng.choice(["", "3.19", self.weird_text()])))
        if rng.random() < 0.15:
            params.append(("ns", rng.choice(["docker.io", "", "evil.example", self.weird_text()])))
        if rng.random() < 0.05:
            params.append((self.weird_text(), self.weird_text()))
        if not params:
            return ""
        return "?" + "&".join(f"{encode(k, rng)}={encode(v, rng)}" for k, v in params)

    def headers(self, kind: str) -> list[tuple[str, str]]:
        rng = self.rng
        headers = [("Host", self.host)]
        if (kind == "blob" and rng.random() < 0.7) or rng.random() < 0.1:
            headers.append(("Range", rng.choice(RANGES)))
            if rng.random() < 0.05:
                headers.append(("Range", rng.choice(RANGES)))
        if (kind == "manifest" and rng.random() < 0.7) or rng.random() < 0.1:
            for _ in range(rng.choice([1, 1, 2, 3])):
                headers.append(("Accept", rng.choice(ACCEPTS)))
        if rng.random() < 0.1:
            headers.append(rng.choice(PRECONDITIONS))
        if rng.random() < 0.03:
            headers.append(("Accept-Encoding", rng.choice(["gzip, br", "*", "identity;q=0"])))
        return headers

    def probe(self) -> Probe:
        rng = self.rng
        if rng.random() < 0.01:
            return Probe(rng.choice(GARBAGE), "", "", kind="garbage")
        method = rng.choice(ODD_METHODS) if rng.random() < 0.15 else rng.choice(["GET", "HEAD"])
        path, kind = self.path()
        target = encode(path, rng) + self.query(kind)
        if method == "CONNECT" and rng.random() < 0.5:
            target = "registry.example:443"
        lines = [f"{method} {target} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in self.headers(kind)]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogatepass")
        too_long = any(len(line.encode("utf-8", "surrogatepass")) > LINE_LIMIT for line in lines)
        connect_path = method == "CONNECT" and target.startswith("/")
        refused = method in UNKNOWN_METHODS or too_long or connect_path
        return Probe(raw, method, target, kind="refused" if refused else "http")

    def __iter__(self) -> Iterator[Probe]:
        while True:
            yield self.probe()


# -- a tiny HTTP/1.1 client that sends the bytes as they are ----------------------------------


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def send(self, probe: Probe) -> Answer | None:
        """The answer, or None when the server closed the connection without one. A kept-alive
        connection the server closed meanwhile is retried once on a new one, as clients do."""
        for attempt in range(2):
            fresh = self.writer is None or not probe.http
            if fresh:
                await self.close()
                self.reader, self.writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, limit=1 << 20
                )
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(probe.raw)
                if not probe.raw.strip():
                    self.writer.write_eof()  # blank lines: the server waits for more otherwise
                await self.writer.drain()
                answer = await read_answer(self.reader, probe.method == "HEAD")
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if fresh or attempt:
                    return None
                continue
            if answer.closed or not probe.http:
                await self.close()
            return answer
        return None


async def read_answer(reader: asyncio.StreamReader, head: bool) -> Answer:
    block = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = block.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        if line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    closed = headers.get("connection", "").lower() == "close"
    if head or status in (204, 304) or status < 200:
        return Answer(status, headers, b"", closed)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            chunks += chunk[:-2]
            if size == 0:
                break
        return Answer(status, headers, bytes(chunks), closed)
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        return Answer(status, headers, body, closed)
    return Answer(status, headers, await reader.read(), True)


# -- what is checked --------------------------------------------------------------------------


def is_oci_error(answer: Answer, head: bool) -> bool:
    if answer.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return False
    if head:
        return True
    try:
        body = json.loads(answer.body)
    except ValueError:
        return False
    errors = body.get("errors") if isinstance(body, dict) else None
    return (
        isinstance(errors, list)
        and bool(errors)
        and all(isinstance(e, dict) and {"code", "message", "detail"} <= set(e) for e in errors)
    )


def forged(text: str) -> bool:
    """A raw control character (or a unicode line break) in a formatted log line."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


@dataclass(slots=True)
class Tally:
    sent: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    non_oci: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)

    def check(self, probe: Probe, answer: Answer | None) -> None:
        self.sent += 1
        where = (probe.method + " " + probe.target)[:160] if probe.http else repr(probe.raw[:60])
        if not probe.http:
            # aiohttp's 400 (text/plain), a closed connection, or (a CONNECT to a path that
            # llhttp let through) an answer of the app, which must then be an OCI error.
            if answer is None or (answer.status == 400 and not is_oci_error(answer, False)):
                outcome = "closed" if answer is None else "400"
            else:
                outcome = "app" if answer.status < 500 and is_oci_error(answer, False) else "odd"
            self.refusals[f"{probe.kind} {outcome}"] += 1
        if answer is None:
            if probe.http:
                self.unanswered.append(where)
            return
        self.answers[answer.status] += 1
        if answer.status >= 500:
            self.server_errors.append(f"{answer.status} {where}")
        elif (
            probe.http
            and 400 <= answer.status < 500
            and probe.target.startswith("/v2/")
            and not is_oci_error(answer, probe.method == "HEAD")
        ):
            content_type = answer.headers.get("content-type")
            self.non_oci.append(f"{answer.status} {content_type} {where}")


class Capture(logging.Handler):
    """Every record, formatted as the mirror's text and JSON formats would print it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.text = log_output.TextFormatter()
        self.json = log_output.JsonFormatter()
        self.records = 0
        self.forged: list[str] = []
        self.levels: Counter[tuple[str, str]] = Counter()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records += 1
        self.levels[(record.name, record.levelname)] += 1
        if record.levelno >= logging.ERROR:
            self.errors.append(
                f"{record.name}: {record.getMessage()} "
                + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
            )
        # A traceback spans lines by design; the line itself and the JSON object may not.
        exc_info, exc_text = record.exc_info, record.exc_text
        record.exc_info = record.exc_text = None
        try:
            line = self.text.format(record)
        finally:
            record.exc_info, record.exc_text = exc_info, exc_text
        for formatted in (line, self.json.format(record)):
            if forged(formatted):
                self.forged.append(formatted[:300])


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture
async def logged_mirror(
    mirror_config: dict[str, Any],
    clock: FakeClock,
    aiohttp_server: Callable[..., Awaitable[TestServer]],
) -> AsyncIterator[TestServer]:
    """A mirror on a real socket with the request log of `mirror serve`."""
    app: Application = create_app(parse_config(mirror_config), clock=clock)
    server = await aiohttp_server(
        app, access_log_class=AccessLogger, access_log=logging.getLogger(ACCESS_LOGGER)
    )
    yield server


async def seed_content(hub: FakeHub, mirror: TestServer) -> Content:
    layers = [hub.make_blob(size, seed=n) for n, size in enumerate([0, 1, 1000, 70_000])]
    image = hub.add_image(REPO, TAG, layers)
    hub.add_image(REPO, "latest", [hub.make_blob(10, seed=99)])
    uncached = [
        hub.add_blob(REPO, hub.make_blob(500 + 997 * n, seed=100 + n))
        for n in range(UNCACHED_BLOBS)
    ]
    sizes = {digest: len(data) for digest, data in zip(image.layer_digests, layers, strict=True)}
    sizes.update({digest: 500 + 997 * n for n, digest in enumerate(uncached)})
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        accept = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/{TAG}"), headers=accept) as r:
            assert r.status == 200
            digest = r.headers["Docker-Content-Digest"]
        for layer in image.layer_digests:
            async with session.get(mirror.make_url(f"/v2/{REPO}/blobs/{layer}")) as r:
                assert r.status == 200
                await r.read()
    return Content(digest, tuple(image.layer_digests), tuple(uncached), sizes)


def write_report(path: str, details: dict[str, Any]) -> None:
    with open(path, "w") as file:
        json.dump(details, file, indent=1)


async def run_corpus(port: int, corpus: Corpus, count: int) -> Tally:
    tally = Tally()
    probes = iter(corpus)
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        connection = Connection(port)
        try:
            while remaining > 0:
                remaining -= 1
                probe = next(probes)
                try:
                    answer = await asyncio.wait_for(connection.send(probe), ANSWER_TIMEOUT)
                except TimeoutError:
                    await connection.close()
                    tally.unanswered.append(f"timeout: {probe.raw[:120]!r}")
                    continue
                tally.check(probe, answer)
        finally:
            await connection.close()

    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return tally


async def test_a_hostile_corpus_gets_no_5xx_only_oci_errors_and_no_forged_log_line(
    hub: FakeHub, logged_mirror: TestServer, capture: Capture
) -> None:
    content = await seed_content(hub, logged_mirror)
    assert logged_mirror.port is not None
    corpus = Corpus(SEED, content, f"127.0.0.1:{logged_mirror.port}")
    started = time.monotonic()
    tally = await run_corpus(logged_mirror.port, corpus, REQUESTS)
    elapsed = time.monotonic() - started
    summary = (
        f"{tally.sent} requests in {elapsed:.1f}s (seed {SEED}): "
        f"{sum(tally.answers[s] for s in tally.answers if s >= 500)} 5xx, "
        f"{len(tally.non_oci)} non-OCI 4xx under /v2/, {len(capture.forged)} forged log lines, "
        f"{len(tally.unanswered)} unanswered; statuses {sorted(tally.answers.items())}; "
        f"refused by the HTTP parser: {sorted(tally.refusals.items())}"
    )
    print(summary)
    if report := os.environ.get("MIRROR_HOSTILE_REPORT"):
        details = {
            "summary": summary,
            "server_errors": tally.server_errors,
            "non_oci": tally.non_oci,
            "unanswered": tally.unanswered,
            "forged": capture.forged,
            "errors": capture.errors,
            "levels": [f"{name} {level}: {n}" for (name, level), n in capture.levels.items()],
        }
        write_report(report, details)
    assert tally.sent == REQUESTS
    assert not tally.server_errors, (summary, tally.server_errors[:20])
    assert not tally.non_oci, (summary, tally.non_oci[:20])
    assert not capture.forged, (summary, capture.forged[:10])
    assert not tally.unanswered, (summary, tally.unanswered[:20])
    # What the parser refuses is a 400 (or a closed connection), logged once, never at ERROR.
    assert set(tally.refusals) <= {
        f"{kind} {outcome}"
        for kind in ("refused", "garbage")
        for outcome in ("400", "closed", "app")
    }, tally.refusals
    assert not capture.errors, capture.errors[:3]
    assert capture.levels[("aiohttp.server", "INFO")] <= sum(tally.refusals.values())
    # The corpus did reach hits, fills, ranges and tag lists.
    assert tally.answers[206] and tally.answers[416] and tally.answers[200]
