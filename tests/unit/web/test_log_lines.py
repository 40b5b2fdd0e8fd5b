"""mirror.web.access_log: a log line no request can split, in every format."""

from __future__ import annotations

import logging
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from mirror.cli.log_output import JsonFormatter, TextFormatter
from mirror.web.access_log import printable


def one_line(text: str) -> bool:
    return not any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def test_control_characters_are_escaped() -> None:
    assert printable("/v2/a\nINFO forged\r\x1b[2J") == "/v2/a\\x0aINFO forged\\x0d\\x1b[2J"
    assert printable("\x00\x7f\x85\u2028\u2029") == "\\x00\\x7f\\x85\\u2028\\u2029"
    assert printable("/v2/café/😀\\x") == "/v2/café/😀\\x"


@given(st.text())
def test_printable_is_one_line_and_idempotent(text: str) -> None:
    escaped = printable(text)
    assert one_line(escaped)
    assert printable(escaped) == escaped


@given(st.text())
def test_every_format_prints_any_message_on_one_line(text: str) -> None:
    record = logging.LogRecord("mirror.access", logging.INFO, __file__, 1, "%s", (text,), None)
    record.fields = {"path": text}
    for formatter in (TextFormatter(), JsonFormatter()):
        assert one_line(formatter.format(record))
