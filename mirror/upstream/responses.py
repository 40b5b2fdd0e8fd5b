"""What the upstream's answers mean: manifests as fetched, rate-limit and Retry-After headers."""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from mirror.errors import DigestInvalid
from mirror.reference import Digest


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    body: bytes
    media_type: str
    digest: Digest | None  # the upstream's Docker-Content-Digest, when it sent a valid one


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int | None = None
    remaining: int | None = None


def request_kind(path: str) -> str:
    """A bounded label for an upstream request."""
    for kind in ("manifests", "blobs", "tags"):
        if f"/{kind}/" in path:
            return kind.removesuffix("s")
    return "other"


def accept_headers(accept: Sequence[str]) -> dict[str, str]:
    return {"Accept": ", ".join(accept)} if accept else {}


def media_type(response: aiohttp.ClientResponse) -> str:
    return response.headers.get("Content-Type", "application/octet-stream").split(";")[0].strip()


def content_digest(response: aiohttp.ClientResponse) -> Digest | None:
    """Docker-Content-Digest; one we cannot parse counts as not sent (the body is hashed anyway)."""
    value = response.headers.get("Docker-Content-Digest")
    if value is None:
        return None
    try:
        return Digest.parse(value.strip())
    except DigestInvalid:
        return None


def rate_limit(response: aiohttp.ClientResponse) -> RateLimit | None:
    """Docker Hub's `ratelimit-limit: 100;w=21600` and `ratelimit-remaining: 99;w=21600`."""
    limit = _leading_int(response.headers.get("ratelimit-limit"))
    remaining = _leading_int(response.headers.get("ratelimit-remaining"))
    if limit is None and remaining is None:
        return None
    return RateLimit(limit=limit, remaining=remaining)


def _leading_int(value: str | None) -> int | None:
    if not value:
        return None
    head = value.split(";", 1)[0].strip()
    return int(head) if head.isascii() and head.isdigit() and len(head) <= 18 else None


# However long an upstream asks us to stay away, we ask again after this: a huge or mistaken
# Retry-After (a day, a date years ahead) must not leave the cache unrefreshable until a restart.
MAX_RETRY_AFTER = 3600.0


def retry_after(value: str | None, now: float, default: float) -> float:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110),
    at most MAX_RETRY_AFTER; `default` (also bounded) when absent or unreadable."""
    if value is None:
        return min(default, MAX_RETRY_AFTER)
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(int(value[:9])), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError):
        return min(default, MAX_RETRY_AFTER)
    if when.tzinfo is None:  # "-0000" parses as naive; HTTP dates are UTC all the same
        when = when.replace(tzinfo=datetime.UTC)
    return min(max(0.0, when.timestamp() - now), MAX_RETRY_AFTER)
