"""mirror.web.ranges: the one byte range of a `Range: bytes=…` header, for blobs being filled."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mirror.errors import RangeInvalid
from mirror.web.ranges import ByteRange, parse_range
from unit.strategies import awkward_text, digits

SIZE = 1000


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 100)),  # end is inclusive in the header, exclusive here
        ("bytes=0-0", ByteRange(0, 1)),
        ("bytes=999-999", ByteRange(999, 1000)),
        ("bytes=100-", ByteRange(100, 1000)),  # open: to the end
        ("bytes=0-", ByteRange(0, 1000)),
        ("bytes=-100", ByteRange(900, 1000)),  # suffix: the last 100 bytes
        ("bytes=-1", ByteRange(999, 1000)),
        ("bytes=-1000", ByteRange(0, 1000)),
        ("bytes=-5000", ByteRange(0, 1000)),  # a suffix longer than the blob is all of it
        ("bytes=500-5000", ByteRange(500, 1000)),  # an end past the blob is clamped
        ("bytes=0-999", ByteRange(0, 1000)),
        ("bytes=007-010", ByteRange(7, 11)),
        ("  bytes=1-2  ", ByteRange(1, 3)),
    ],
)
def test_a_satisfiable_range(header: str, expected: ByteRange) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize(
    "header",
    [
        "bytes=1000-",  # starts at the end
        "bytes=1000-2000",
        "bytes=5000-",
        "bytes=5-3",  # ends before it starts
        "bytes=-0",  # an empty suffix
    ],
)
def test_an_unsatisfiable_range_is_416(header: str) -> None:
    with pytest.raises(RangeInvalid) as caught:
        parse_range(header, SIZE)
    assert caught.value.status == 416
    assert caught.value.detail == {"size": SIZE}


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-1,5-6",  # several ranges: RFC 9110 lets us send the whole blob
        "bytes=0-1, 5-6",
        "bytes=-",
        "bytes=",
        "",
        "bytes 0-1",
        "items=0-1",
        "bytes=a-b",
        "bytes=1.5-2",
        "bytes=+1-2",
        "bytes=0x10-",
        "BYTES=0-1",
    ],
)
def test_a_header_that_is_not_one_byte_range_means_the_whole_blob(header: str) -> None:
    assert parse_range(header, SIZE) is None


def test_no_header_or_an_unknown_size_means_the_whole_blob() -> None:
    assert parse_range(None, SIZE) is None
    assert parse_range("bytes=0-1", None) is None
    assert parse_range(None, None) is None


def test_an_empty_blob_has_no_satisfiable_range() -> None:
    # As aiohttp answers for a cached blob: 416, not a 206 with "bytes 0--1/0".
    for header in ("bytes=0-", "bytes=0-0", "bytes=-1", "bytes=-5"):
        with pytest.raises(RangeInvalid):
            parse_range(header, 0)


def test_numbers_past_the_int_digit_limit_compare_as_huge() -> None:
    huge = "9" * 5000  # int() refuses more than 4,300 digits
    assert parse_range(f"bytes=0-{huge}", SIZE) == ByteRange(0, SIZE)
    assert parse_range(f"bytes=-{huge}", SIZE) == ByteRange(0, SIZE)
    with pytest.raises(RangeInvalid):
        parse_range(f"bytes={huge}-", SIZE)
    with pytest.raises(RangeInvalid):
        parse_range(f"bytes={huge}-{huge}", SIZE)
    zeros = "0" * 5000
    assert parse_range(f"bytes={zeros}5-{zeros}9", SIZE) == ByteRange(5, 10)
    assert parse_range(f"bytes=-{zeros}1", SIZE) == ByteRange(999, 1000)


@pytest.mark.parametrize(
    # Arabic-Indic, fullwidth and superscript digits
    "header",
    [
        "bytes=\u0660-\u0663",
        "bytes=0-\u0663",
        "bytes=-\u0663",
        "bytes=\uff11-\uff12",
        "bytes=\u00b2-",
    ],
)
def test_only_ascii_digits_are_numbers(header: str) -> None:
    assert parse_range(header, SIZE) is None


# Properties

sizes = st.one_of(st.integers(0, 3), st.integers(0, 10**13))
positions = st.one_of(st.integers(0, 5), st.integers(0, 10**14))


def reference(first: int | None, last: int | None, size: int) -> ByteRange | None:
    """RFC 9110 section 14.1 for one byte-range-spec; None where the mirror answers 416: an
    unsatisfiable range, a last before the first, or any range of an empty blob."""
    if first is None:
        assert last is not None
        return ByteRange(max(0, size - last), size) if last > 0 and size > 0 else None
    if first >= size or (last is not None and last < first):
        return None
    return ByteRange(first, size if last is None else min(last + 1, size))


@given(st.one_of(st.none(), positions), st.one_of(st.none(), positions), sizes)
def test_a_range_of_ascii_numbers_follows_rfc_9110(
    first: int | None, last: int | None, size: int
) -> None:
    header = f"bytes={'' if first is None else first}-{'' if last is None else last}"
    if first is None and last is None:
        assert parse_range(header, size) is None
        return
    expected = reference(first, last, size)
    if expected is None:
        with pytest.raises(RangeInvalid):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == expected


@given(positions, st.one_of(st.none(), positions), sizes)
def test_a_parsed_range_formats_and_parses_to_itself(
    first: int, last: int | None, size: int
) -> None:
    try:
        parsed = parse_range(f"bytes={first}-{'' if last is None else last}", size)
    except RangeInvalid:
        return
    assert parsed is not None
    again = parse_range(f"bytes={parsed.start}-{parsed.end - 1}", size)
    assert again == parsed


headers = st.one_of(
    st.builds(lambda first, last: f"bytes={first}-{last}", digits(), digits()),
    awkward_text("bytes=-,0123456789"),
)


@given(headers, st.one_of(st.none(), sizes))
@example("bytes=0-" + "9" * 5000, SIZE)  # was ValueError from int()
@example("bytes=-1", 0)  # was ByteRange(0, 0): a 206 with Content-Range "bytes 0--1/0"
@example("bytes=\u0660-\u0663", SIZE)  # was ByteRange(0, 4): `\d` takes Arabic-Indic digits
def test_any_header_is_a_range_inside_the_blob_none_or_range_invalid(
    header: str, size: int | None
) -> None:
    try:
        parsed = parse_range(header, size)
    except RangeInvalid:
        return
    if parsed is not None:
        assert size is not None
        assert 0 <= parsed.start < parsed.end <= size
        assert header.strip().isascii()
