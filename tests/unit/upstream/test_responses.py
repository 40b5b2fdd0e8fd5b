"""mirror.upstream.responses.retry_after: how long a 429 keeps the mirror away, bounded."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mirror.upstream.responses import MAX_RETRY_AFTER, retry_after

NOW = 1_700_000_000.0
DEFAULT = 60.0


def http_date(timestamp: float) -> str:
    return format_datetime(datetime.fromtimestamp(timestamp, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, DEFAULT),
        ("0", 0.0),
        ("30", 30.0),
        (" 120 ", 120.0),
        ("3600", 3600.0),
        ("3601", MAX_RETRY_AFTER),
        ("86400", MAX_RETRY_AFTER),  # a day: was obeyed to the second
        ("9" * 40, MAX_RETRY_AFTER),
        ("inf", DEFAULT),  # not a number the RFC allows: the default, never "forever"
        ("nan", DEFAULT),
        ("-5", DEFAULT),
        ("1e9", DEFAULT),
        ("soon", DEFAULT),
        ("٣٠", DEFAULT),  # non-ASCII digits
        (http_date(NOW + 90), 90.0),
        (http_date(NOW - 90), 0.0),  # a date in the past: ask again now
        (http_date(NOW + 86_400), MAX_RETRY_AFTER),
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
    ],
)
def test_retry_after(value: str | None, seconds: float) -> None:
    assert retry_after(value, NOW, DEFAULT) == seconds


def test_the_bound_is_one_hour() -> None:
    assert MAX_RETRY_AFTER == 3600.0


@given(st.text(max_size=60))
def test_any_header_waits_between_zero_and_an_hour(value: str) -> None:
    assert 0.0 <= retry_after(value, NOW, DEFAULT) <= MAX_RETRY_AFTER


@given(st.integers(min_value=0, max_value=10**30))
def test_any_delay_is_bounded(delay: int) -> None:
    assert retry_after(str(delay), NOW, DEFAULT) == min(float(delay), MAX_RETRY_AFTER)
