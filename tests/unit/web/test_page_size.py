"""mirror.web.registry_api.page_size: the `n` of a tag list, ASCII digits only, clamped."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mirror.errors import PaginationInvalid
from mirror.web.registry_api import MAX_PAGE_SIZE, page_size
from unit.strategies import awkward_text, digits


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("0", 0),
        ("7", 7),
        ("007", 7),
        ("10000", MAX_PAGE_SIZE),
        ("10001", MAX_PAGE_SIZE),
        ("9" * 5000, MAX_PAGE_SIZE),  # int() refuses more than 4,300 digits
        ("0" * 5000 + "3", 3),
        ("0" * 5000, 0),
    ],
)
def test_ascii_digits_are_a_page_size(text: str | None, expected: int | None) -> None:
    assert page_size(text) == expected


@pytest.mark.parametrize(
    "text", ["", "\u00b2", "\u0663", "\uff11", "1\n", " 1", "-1", "+1", "1e3", "0x10", "1.0"]
)
def test_anything_else_is_pagination_number_invalid(text: str) -> None:
    # "²".isdigit() is True, and int("²") a ValueError: that was a 500.
    with pytest.raises(PaginationInvalid) as caught:
        page_size(text)
    assert caught.value.status == 400


@given(st.one_of(digits(), awkward_text("0123456789")))
@example("\u00b2")
@example("9" * 5000)
def test_any_text_is_a_bounded_size_or_pagination_invalid(text: str) -> None:
    try:
        size = page_size(text)
    except PaginationInvalid:
        assert not (text.isascii() and text.isdigit())
        return
    assert size is not None and 0 <= size <= MAX_PAGE_SIZE
    assert text.isascii() and text.isdigit()
