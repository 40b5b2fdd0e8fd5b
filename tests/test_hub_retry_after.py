"""Retry-After is obeyed for at most an hour, whatever the upstream writes in it."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeClock, FakeHub

REPO = "library/alpine"
TTL = 600.0
HOUR = 3600.0
DEFAULT_COOLDOWN = 60.0  # a 429 without a usable Retry-After


def a_day_from(now: float) -> str:
    return format_datetime(datetime.fromtimestamp(now + 86_400, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("86400", HOUR),
        ("9999999999", HOUR),
        ("http-date", HOUR),  # a day from now
        ("inf", DEFAULT_COOLDOWN),  # not a number: the 429 default, not forever
    ],
)
async def test_a_huge_retry_after_keeps_the_mirror_away_for_an_hour_at_most(
    hub: FakeHub,
    mirror: TestServer,
    session: aiohttp.ClientSession,
    clock: FakeClock,
    header: str,
    wait: float,
) -> None:
    image = hub.add_image(REPO, "3.19", [b"layer"])
    url = mirror.make_url(f"/v2/{REPO}/manifests/3.19")
    async with session.get(url) as resp:
        assert resp.status == 200
    hub.faults.rate_limited = a_day_from(clock.now) if header == "http-date" else header
    clock.advance(TTL + 1)
    async with session.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["X-Cache"] == "stale"
    assert hub.count(server="registry", status=429) == 1
    # The upstream recovers at once, but the mirror stays away while the cool-down holds ...
    hub.faults.rate_limited = None
    hub.reset_counts()
    clock.advance(wait - 10)
    for _ in range(5):
        async with session.get(url) as resp:
            assert resp.headers["X-Cache"] == "stale"
    assert hub.count() == 0
    # ... and no longer than an hour (a day before; "inf" once meant until a restart).
    clock.advance(11)
    async with session.get(url) as resp:
        assert resp.status == 200
        assert "Warning" not in resp.headers
        assert await resp.read() == image.manifest_bytes
    assert hub.count(server="registry", path_contains="/manifests/3.19") >= 1
