"""The single byte range of a `Range: bytes=…` header (what registry clients send): the rule
for stored blobs and running fills alike (see blob_responses)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirror.errors import RangeInvalid

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # exclusive


def parse_range(header: str | None, size: int | None) -> ByteRange | None:
    """None means "send the whole blob": no header, an unknown size, or several ranges
    (which RFC 9110 lets a server answer with the whole representation)."""
    if header is None or size is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    # RFC 9110 digits are ASCII; `\d` also took Arabic-Indic "bytes=\u0660-\u0663" as 0-3.
    if not (first + last).isascii():
        return None
    # int() raises ValueError past 4,300 digits ("bytes=0-" + "9" * 5000, or as many leading
    # zeros). Drop the zeros; a number with more digits than the size is past the end, and
    # size + 1 compares the same way.
    first, last = (
        str(size + 1)
        if len(digits.lstrip("0")) > len(str(size))
        else digits.lstrip("0") or digits[:1]
        for digits in (first, last)
    )
    if not first:  # a suffix: the last N bytes
        length = int(last)
        # An empty blob has no last N bytes: ByteRange(0, 0) became a 206 with Content-Range
        # "bytes 0--1/0"; 416 is what aiohttp answers for the same blob once cached.
        if length == 0 or size == 0:
            raise RangeInvalid(f"range {header[:100]!r} is empty", detail={"size": size})
        return ByteRange(max(0, size - length), size)
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if start >= size or end <= start:
        raise RangeInvalid(f"range {header[:100]!r} is outside the blob", detail={"size": size})
    return ByteRange(start, end)
