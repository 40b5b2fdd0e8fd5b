"""What a pull through the S3-redirecting mirror did, seen from outside every process: the
upstream registry's log, the mirror's access log and /metrics, the bucket's objects, and the
byte tallies of the sandbox's forwards (forward.py `--tally`). Each source only grows, so a
`Mark` taken before a pull and `Watch.since` after it give that pull's share."""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from support.mirror_process import MirrorProcess
from support.poll import wait_until
from support.registry import Registry, Request
from support.s3server import S3Server

# The mirror's access line for a blob GET (mirror/web/access_log.py): "GET PATH STATUS NB …".
BLOB_GET = re.compile(r"\bGET /v2/\S+/blobs/(sha256:[0-9a-f]{64}) (\d{3}) (\d+)B ")
SERVED_BYTES = re.compile(r"^mirror_served_bytes_total\{[^}]*\} (\S+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Forwards:
    """The tally files of the sandbox's two forwards (forward.py), and the bucket's port."""

    mirror: Path
    bucket: Path
    bucket_port: int


def tally(path: Path) -> dict[str, int]:
    if not path.exists():  # written on the first connection
        return {"connections": 0, "up": 0, "down": 0}
    counts: dict[str, int] = json.loads(path.read_text())
    return counts


def served_bytes(mirror: MirrorProcess) -> float:
    """Blob bytes the mirror sent to clients so far, from its own /metrics."""
    with urllib.request.urlopen(f"{mirror.url}/metrics", timeout=30) as answer:
        text = answer.read().decode()
    return sum(float(value) for value in SERVED_BYTES.findall(text))


@dataclass(frozen=True, slots=True)
class Mark:
    upstream: int
    log_offset: int
    served: float
    mirror: dict[str, int]
    bucket: dict[str, int]


@dataclass(frozen=True, slots=True)
class Window:
    """What one pull did: upstream requests, the mirror's blob GETs (digest, status, body
    bytes), blob bytes the mirror served, and bytes down each forward into the sandbox."""

    upstream: list[Request]
    blob_gets: list[tuple[str, int, int]]
    served: float
    mirror_down: int
    bucket_down: int
    bucket_connections: int


class Watch:
    """Marks before a pull; what happened since, after it (every source is cumulative)."""

    def __init__(self, registry: Registry, mirror: MirrorProcess, forwards: Forwards) -> None:
        self.registry = registry
        self.mirror = mirror
        self.forwards = forwards

    def mark(self) -> Mark:
        log = self.mirror.stderr_path
        return Mark(
            upstream=self.registry.mark(),
            log_offset=log.stat().st_size if log.exists() else 0,
            served=served_bytes(self.mirror),
            mirror=tally(self.forwards.mirror),
            bucket=tally(self.forwards.bucket),
        )

    def since(self, mark: Mark) -> Window:
        with self.mirror.stderr_path.open("rb") as log:
            log.seek(mark.log_offset)
            lines = log.read().decode(errors="replace")
        mirror, bucket = tally(self.forwards.mirror), tally(self.forwards.bucket)
        return Window(
            upstream=self.registry.requests_since(mark.upstream),
            blob_gets=[(d, int(s), int(n)) for d, s, n in BLOB_GET.findall(lines)],
            served=served_bytes(self.mirror) - mark.served,
            mirror_down=mirror["down"] - mark.mirror["down"],
            bucket_down=bucket["down"] - mark.bucket["down"],
            bucket_connections=bucket["connections"] - mark.bucket["connections"],
        )


def blob_sizes(seaweedfs: S3Server, bucket: str, digests: Iterable[str]) -> dict[str, int]:
    """Each blob's size, as its object in the bucket; every blob must get there (uploads
    complete behind the cold pull's clients, services/pending_uploads.py)."""
    keys = {digest: f"blobs/sha256/{digest.split(':', 1)[1]}" for digest in digests}

    def all_stored() -> dict[str, int] | None:
        stored = seaweedfs.objects(bucket, "blobs/")
        return stored if all(key in stored for key in keys.values()) else None

    stored = wait_until(all_stored, what="every blob in the bucket after the cold pull")
    return {digest: stored[key] for digest, key in keys.items()}


def report(what: str, seconds: float, window: Window) -> None:
    """The figures for the report (`pytest -s`)."""
    redirects = sum(1 for _, status, _ in window.blob_gets if status == 307)
    print(
        f"\n{what}: {seconds:.1f}s; mirror blob GETs {len(window.blob_gets)} ({redirects} 307s);"
        f" blob bytes served by the mirror {window.served:.0f};"
        f" bytes down the mirror's forward {window.mirror_down},"
        f" the bucket's {window.bucket_down} in {window.bucket_connections} connections;"
        f" upstream requests {len(window.upstream)}"
    )


def assert_served_by_the_bucket(window: Window, sizes: dict[str, int]) -> None:
    """Every blob was asked of the mirror, answered 307 without a body, and fetched from the
    bucket: the mirror sent no blob bytes, and the bucket's forward carried at least them all."""
    not_redirected = [get for get in window.blob_gets if get[1] != 307 or get[2] != 0]
    assert not not_redirected, f"blob GETs not answered by a bare 307: {not_redirected}"
    never_asked = set(sizes) - {digest for digest, _, _ in window.blob_gets}
    assert not never_asked, f"blobs the client never asked the mirror for: {never_asked}"
    assert window.served == 0, f"the mirror sent {window.served} blob bytes itself"
    assert window.bucket_down >= sum(sizes.values()), (
        f"{window.bucket_down} bytes came from the bucket, the blobs are {sum(sizes.values())}"
    )
