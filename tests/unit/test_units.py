"""mirror.units: durations, sizes and listen addresses as the config file and CLI write them."""

from __future__ import annotations

import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mirror.errors import ConfigError
from mirror.units import parse_duration, parse_listen, parse_size
from unit.strategies import awkward_text, huge_digits

KEY = "cache.tag_ttl"

# Durations


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("10m", 600.0),
        ("30s", 30.0),
        ("1.5h", 5400.0),
        ("250ms", 0.25),
        ("2d", 172800.0),
        ("45", 45.0),  # no unit: seconds
        ("0", 0.0),
        (" 10 m ", 600.0),
        (30, 30.0),  # TOML numbers are seconds
        (0.5, 0.5),
        (0, 0.0),
    ],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value, KEY) == seconds


@pytest.mark.parametrize(
    "value",
    [
        "soon",
        "",
        "m",
        "10x",
        "10 minutes",
        "1e3s",
        "-5s",
        "10M",  # units are lowercase; M is not minutes
        ".5s",
        "5.s",
        "1h30m",
        True,  # a TOML bool is not a number of seconds
        False,
        None,
        [10],
        {"m": 10},
    ],
)
def test_malformed_durations_are_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{KEY}: expected a duration"):
        parse_duration(value, KEY)


@pytest.mark.parametrize("value", [-1, -0.5])
def test_negative_durations_are_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{KEY}: a duration cannot be negative"):
        parse_duration(value, KEY)


@pytest.mark.parametrize(
    "value",
    [
        math.nan,  # passed `< 0`
        math.inf,
        -math.inf,
        pytest.param(10**400, id="10**400"),  # float() raised OverflowError
        pytest.param(-(10**400), id="-10**400"),
        pytest.param("9" * 400 + "s", id="'9'*400+'s'"),  # was inf seconds
    ],
)
def test_durations_must_be_finite(value: object) -> None:
    with pytest.raises(ConfigError, match=rf"^{KEY}: "):
        parse_duration(value, KEY)


# Sizes


@pytest.mark.parametrize(
    ("value", "size"),
    [
        ("50GiB", 50 * 1024**3),
        ("500MB", 500 * 1000**2),
        ("1TB", 1000**4),
        ("2TiB", 2 * 1024**4),
        ("1.5KiB", 1536),
        ("10 kb", 10_000),  # units are case-insensitive
        ("10KIB", 10_240),
        ("100B", 100),
        ("100", 100),
        ("0", 0),
        (" 5 GB ", 5 * 1000**3),
        (1024, 1024),  # TOML integers are bytes
        (0, 0),
        (10**30, 10**30),
    ],
)
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value, "storage.max_size") == size


@pytest.mark.parametrize(
    "value",
    [
        "lots",
        "",
        "GiB",
        "5XB",
        "5 Gi",
        "5iB",
        "-1GB",
        "1e3",
        True,
        False,
        1.5,  # a TOML float is not a number of bytes
        None,
        "1k\u0130b",  # dotted capital I matched `i` case-insensitively, then KeyError
        "1\u212aiB",  # the Kelvin sign matched `K` case-insensitively
        "\u0661\u0660MB",  # Arabic-Indic digits
        pytest.param("9" * 400, id="'9'*400"),  # int(inf) raised OverflowError
        pytest.param("9" * 300 + "TiB", id="'9'*300+'TiB'"),
    ],
)
def test_malformed_sizes_are_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^storage\.max_size: "):
        parse_size(value, "storage.max_size")


def test_negative_sizes_are_refused() -> None:
    with pytest.raises(ConfigError, match="cannot be negative"):
        parse_size(-1, "storage.max_size")


# Listen addresses


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        (":5000", ("0.0.0.0", 5000)),  # no host: every IPv4 address
        ("[::1]:8080", ("::1", 8080)),
        ("[::]:5000", ("::", 5000)),
        ("localhost:65535", ("localhost", 65535)),
        ("mirror.internal:00080", ("mirror.internal", 80)),
    ],
)
def test_listen_addresses(value: str, address: tuple[str, int]) -> None:
    assert parse_listen(value, "server.listen") == address


@pytest.mark.parametrize(
    "value",
    [
        "localhost",
        "5000",
        "localhost:",
        "localhost:65536",
        "localhost:-1",
        "localhost:http",
        "localhost: 80",
        "localhost:80 ",
        "localhost:8o",
        "localhost:\u00b2",  # isdigit() is true for '²', then int() raised ValueError
        "localhost:\u0668\u0660",  # Arabic-Indic digits were port 80
        pytest.param("localhost:" + "1" * 5000, id="5000 digits"),  # int() raised ValueError
        "localhost:123456",
        5000,
        True,
        None,
    ],
)
def test_malformed_listen_addresses_are_refused_naming_the_key(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^server\.listen: "):
        parse_listen(value, "server.listen")


# Properties: each parser returns a sound value or raises ConfigError, whatever it is given.

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "": 1.0}
SIZE_UNITS = {"": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4}
SIZE_UNITS |= {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}

anything = st.one_of(
    awkward_text("0123456789.:[] msdhKMGTiB"),
    st.integers(),
    st.integers(10**300, 10**400).flatmap(lambda n: st.sampled_from([n, -n])),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@given(st.integers(0, 10**9), st.sampled_from(sorted(DURATION_UNITS)), st.sampled_from(["", " "]))
def test_a_written_duration_reads_back(number: int, unit: str, space: str) -> None:
    assert parse_duration(f"{number}{space}{unit}", KEY) == number * DURATION_UNITS[unit]


@given(anything)
@example(10**400)  # was OverflowError from float()
@example(math.nan)  # was returned: nan passes `< 0`
@example("9" * 400 + "s")  # was inf seconds
def test_any_value_is_a_finite_duration_or_config_error(value: object) -> None:
    try:
        seconds = parse_duration(value, KEY)
    except ConfigError:
        return
    assert 0 <= seconds < math.inf


@given(st.integers(0, 8000), st.sampled_from(sorted(SIZE_UNITS)), st.booleans())
def test_a_written_size_reads_back(number: int, unit: str, lower: bool) -> None:
    written = f"{number}{unit.lower() if lower else unit}"
    assert parse_size(written, "storage.max_size") == number * SIZE_UNITS[unit]


@given(st.one_of(anything, huge_digits().map(lambda digits: digits[:400] + "KiB")))
@example("9" * 400)  # was OverflowError from int(inf)
@example("1k\u0130b")  # was KeyError: 'ki̇b'
def test_any_value_is_a_size_or_config_error(value: object) -> None:
    try:
        size = parse_size(value, "storage.max_size")
    except ConfigError:
        return
    assert isinstance(size, int)
    assert size >= 0


hosts = st.one_of(
    st.text("abcxyz019.-", min_size=1, max_size=20),
    st.ip_addresses(v=4).map(str),
)


@given(hosts, st.integers(0, 65535))
def test_a_written_listen_address_reads_back(host: str, port: int) -> None:
    assert parse_listen(f"{host}:{port}", "server.listen") == (host, port)


@given(st.ip_addresses(v=6).map(str), st.integers(0, 65535))
def test_a_bracketed_ipv6_address_reads_back(host: str, port: int) -> None:
    assert parse_listen(f"[{host}]:{port}", "server.listen") == (host, port)


@given(
    st.one_of(
        anything,
        st.builds("localhost:{}".format, awkward_text("0123456789")),
    )
)
@example("localhost:\u00b2")  # was ValueError from int()
@example("localhost:" + "1" * 5000)  # was ValueError from int()
def test_any_value_is_a_listen_address_or_config_error(value: object) -> None:
    try:
        host, port = parse_listen(value, "server.listen")
    except ConfigError:
        return
    assert isinstance(value, str)
    assert host in value or host == "0.0.0.0"  # ":5000"
    assert 0 <= port <= 65535
    assert int(value.rpartition(":")[2]) == port
