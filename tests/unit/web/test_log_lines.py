"""mirror.web.access_log: a log line no request can split, and malformed HTTP as one INFO line."""

from __future__ import annotations

import logging
import sys
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine
from hypothesis import given
from hypothesis import strategies as st

from mirror.cli.log_output import JsonFormatter, TextFormatter
from mirror.web.access_log import MalformedRequests, printable


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


def server_record(exc: BaseException, level: int = logging.ERROR) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "aiohttp.server",
        level,
        __file__,
        1,
        "Error handling request from %s",
        ("1.2.3.4",),
        exc_info,
    )


@contextmanager
def server_logger_at(level: int) -> Iterator[None]:
    logger = logging.getLogger("aiohttp.server")
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def test_a_request_the_parser_refused_becomes_one_info_line_without_traceback() -> None:
    record = server_record(BadHttpMessage("Invalid header token\n\n  b'Bad Header'\n   ^"))
    with server_logger_at(logging.INFO):
        assert MalformedRequests().filter(record)
    assert (record.levelno, record.levelname, record.exc_info) == (logging.INFO, "INFO", None)
    assert record.getMessage() == (
        "malformed request from 1.2.3.4 refused (BadHttpMessage): Invalid header token"
    )
    line = TextFormatter().format(record)
    assert one_line(line) and "Traceback" not in line


def test_a_first_line_that_is_not_http_stays_at_debug() -> None:
    record = server_record(BadStatusLine("\x16\x03\x01"), level=logging.DEBUG)
    with server_logger_at(logging.DEBUG):
        assert MalformedRequests().filter(record)
    assert record.levelno == logging.DEBUG and record.exc_info is None
    assert one_line(record.getMessage())


def test_it_is_not_printed_below_the_configured_level() -> None:
    record = server_record(BadHttpMessage("Invalid header token"))
    with server_logger_at(logging.WARNING):  # `mirror serve --log-level warning`
        assert not MalformedRequests().filter(record)


def test_a_crash_is_left_alone() -> None:
    record = server_record(RuntimeError("a real crash"))
    assert MalformedRequests().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert record.getMessage() == "Error handling request from 1.2.3.4"
