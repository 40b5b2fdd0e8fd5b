"""`mirror ls`: the catalog's JSON (from the admin API or a stopped data folder) as tables.

Works on the JSON only, whichever side produced it, so `--json` and the table always show the
same data. Times arrive as RFC 3339 UTC strings; the table shows recent ones relative to now
("5m ago") and older ones as a date.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from mirror.cli.admin_client import call_server
from mirror.media_types import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    DOCKER_V1_SIGNED,
    OCI_INDEX,
    OCI_MANIFEST,
)

Page = dict[str, Any]
PageFetcher = Callable[[str | None], Page]  # `last` (None: the first page) → one page

SHORT_TYPES = {
    OCI_INDEX: "oci-index",
    OCI_MANIFEST: "oci",
    DOCKER_LIST: "docker-list",
    DOCKER_MANIFEST: "docker",
    DOCKER_V1_SIGNED: "docker-v1",
}
_UNITS = ("kB", "MB", "GB", "TB", "PB")
RELATIVE_FOR = 7 * 86400  # older than a week: an absolute date reads better than "40d ago"
PAGE_SIZE = 1000  # the most the API gives per page
MAX_PAGES = 100_000  # a server whose `next` never ends must not keep us looping forever


def from_server(
    server: str, token: str | None, repository: str | None, upstream: str | None, prefix: str | None
) -> Page:
    """The catalog's answer from a running mirror: one repository, or every page of the list."""
    base = {"upstream": upstream} if upstream else {}
    if repository is not None:
        path = "/admin/catalog/" + quote(repository, safe="/")
        return call_server(server, token, "GET", path, base)
    if prefix:
        base["prefix"] = prefix

    def fetch(last: str | None) -> Page:
        query = {**base, "n": str(PAGE_SIZE), **({"last": last} if last else {})}
        return call_server(server, token, "GET", "/admin/catalog", query)

    return all_pages(fetch)


def all_pages(fetch: PageFetcher) -> Page:
    """Every page of the catalog, following `next`, as one answer (`next` null)."""
    repositories: list[Any] = []
    last: str | None = None
    for _ in range(MAX_PAGES):
        page = fetch(last)
        repositories.extend(page.get("repositories", []))
        following = page.get("next")
        if not following or following == last:
            break
        last = following
    return {"repositories": repositories, "next": None}


def human_size(size: int) -> str:
    """Bytes in SI units with one decimal: 999 B, 12.3 MB (as registries and `docker` show)."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in _UNITS:
        value /= 1000
        if value < 999.95 or unit == _UNITS[-1]:
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def when(stamp: str | None, now: float | None = None) -> str:
    """An RFC 3339 time as "just now", "5m ago", "3h ago", "2d ago", or a UTC date and time."""
    if not stamp:
        return "-"
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    age = (time.time() if now is None else now) - moment.timestamp()
    if age < 0 or age >= RELATIVE_FOR:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M")
    for seconds, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if age >= seconds:
            return f"{int(age // seconds)}{unit} ago"
    return "just now"


def short_type(media_type: str) -> str:
    return SHORT_TYPES.get(media_type, media_type.rpartition("/")[2])


def short_digest(digest: str) -> str:
    """sha256:0123456789ab… as `docker images` shortens IDs: the algorithm and 12 hex digits."""
    algorithm, _, hexdigits = digest.partition(":")
    return f"{algorithm}:{hexdigits[:12]}" if hexdigits else digest


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = []
    for row in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def repositories_table(answer: Page, now: float | None = None) -> str:
    """REPO, TAGS, SIZE (unique/shared), LAST PULLED; the upstream is named when there are
    several."""
    entries = answer.get("repositories", [])
    upstreams = {entry["upstream"] for entry in entries}
    rows = [
        [
            entry["repository"]
            if len(upstreams) <= 1
            else f"{entry['upstream']}/{entry['repository']}",
            str(entry["tags"]),
            f"{human_size(entry['bytes']['unique'])} / {human_size(entry['bytes']['shared'])}",
            when(entry.get("last_pulled"), now),
        ]
        for entry in entries
    ]
    return table(["REPO", "TAGS", "SIZE (UNIQUE / SHARED)", "LAST PULLED"], rows)


def tags_table(detail: Page, now: float | None = None) -> str:
    """One repository's tags, then its totals."""
    rows = [
        [
            tag["tag"],
            short_digest(tag["digest"]),
            short_type(tag["media_type"]),
            "single" if tag.get("platforms") is None else ",".join(tag["platforms"]) or "-",
            when(tag.get("resolved_at"), now),
            when(tag.get("last_pulled"), now),
        ]
        for tag in detail.get("tag_list", [])
    ]
    header = ["TAG", "DIGEST", "TYPE", "PLATFORMS", "RESOLVED", "LAST PULLED"]
    sizes = detail["bytes"]
    totals = (
        f"{detail['upstream']}/{detail['repository']}: {detail['tags']} "
        f"{'tag' if detail['tags'] == 1 else 'tags'}, "
        f"{human_size(sizes['unique'])} unique, {human_size(sizes['shared'])} shared, "
        f"last pulled {when(detail.get('last_pulled'), now)}"
    )
    return f"{table(header, rows)}\n\n{totals}" if rows else totals


def render(answer: Page, repository: str | None) -> str:
    return tags_table(answer) if repository is not None else repositories_table(answer)
