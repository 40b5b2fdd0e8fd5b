"""What the upstream registry saw, for the assertions of the client tests."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from support.images import Image
from support.registry import Request


def listing(requests: list[Request]) -> str:
    return "\n".join(f"  {r}" for r in requests) or "  (none)"


def blob_gets(requests: list[Request]) -> Counter[str]:
    """How often each blob was fetched (GET) from the upstream."""
    return Counter(r.reference or "?" for r in requests if r.method == "GET" and r.kind == "blob")


def all_blobs(images: Iterable[Image]) -> set[str]:
    """Config and layers of the linux/amd64 image of each image: what a client pulls."""
    return {blob for image in images for blob in image.blobs}


def assert_cold_pull(requests: list[Request], images: Iterable[Image]) -> None:
    """The mirror fetched every blob the clients needed from the upstream, each exactly once."""
    fetched = blob_gets(requests)
    missing = all_blobs(images) - set(fetched)
    assert not missing, f"blobs never fetched upstream: {missing}\n{listing(requests)}"
    twice = {digest: n for digest, n in fetched.items() if n > 1}
    assert not twice, f"blobs fetched upstream more than once: {twice}\n{listing(requests)}"


def assert_warm_pull(requests: list[Request]) -> None:
    """A pull served from the mirror's cache, within the tag TTL: the upstream saw nothing."""
    assert not blob_gets(requests), f"warm pull fetched blobs upstream:\n{listing(requests)}"
    assert not requests, f"warm pull within the tag TTL asked the upstream:\n{listing(requests)}"


def assert_mirror_log_clean(stderr: Path) -> None:
    """The mirror logged no error or traceback, even where the client got what it wanted."""
    lines = stderr.read_text(errors="replace").splitlines()
    bad = [n for n, line in enumerate(lines) if " ERROR " in line or line.startswith("Traceback")]
    if bad:
        first = "\n".join(lines[bad[0] : bad[0] + 25])
        raise AssertionError(
            f"the pulls worked, but the mirror logged {len(bad)} error lines; the first:\n{first}"
        )
