"""Values with units in the config: durations ("10m"), sizes ("50GiB") and "host:port"."""

from __future__ import annotations

import math
import re

from mirror.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_duration(value: object, key: str) -> float:
    """Seconds from "10m", "30s", "1.5h", "250ms" or a plain number of seconds."""
    if isinstance(value, bool):
        raise ConfigError(f'{key}: expected a duration such as "10m", got {value!r}')
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # float(10**400), a TOML integer tomllib accepts
            raise ConfigError(f"{key}: a duration must be a finite number") from None
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ConfigError(f'{key}: expected a duration such as "10m" or "30s", got {value!r}')
    if seconds < 0:
        raise ConfigError(f"{key}: a duration cannot be negative")
    # nan passed `< 0`, and "9" * 400 (or TOML's inf) was inf seconds: an inf timeout made
    # every upstream request raise OverflowError in aiohttp.
    if not math.isfinite(seconds):
        raise ConfigError(f"{key}: a duration must be a finite number")
    return seconds


def parse_size(value: object, key: str) -> int:
    """Bytes from "50GiB", "500MB", "0" or a plain number of bytes."""
    if isinstance(value, bool):
        raise ConfigError(f'{key}: expected a size such as "50GiB", got {value!r}')
    if isinstance(value, int):
        size = value
    # ASCII only: with IGNORECASE, "1k\u0130b" (dotted capital I) matched and lower()ed to a
    # unit that raised KeyError; the Kelvin sign passed for K and Arabic-Indic digits as digits.
    elif isinstance(value, str) and value.isascii() and (match := _SIZE.match(value)):
        unit = (match.group(2) or "b").lower()
        number = float(match.group(1)) * _SIZE_UNITS[unit]
        if not math.isfinite(number):  # "9" * 400 is inf, and int(inf) raised OverflowError
            raise ConfigError(f"{key}: size is too large")
        size = int(number)
    else:
        raise ConfigError(f'{key}: expected a size such as "50GiB" or "500MB", got {value!r}')
    if size < 0:
        raise ConfigError(f"{key}: a size cannot be negative")
    return size


def parse_listen(value: object, key: str) -> tuple[str, int]:
    """("host", port) from "host:port", "[::1]:port" or ":port"."""
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f'{key}: expected "host:port", got {value!r}')
    host, _, port_text = value.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    # ASCII and at most 5 digits: isdigit() is true for "\u00b2" (then int() raised
    # ValueError), for Arabic-Indic digits, and for 5,000 digits that int() refuses.
    digits = port_text.isascii() and port_text.isdigit() and len(port_text) <= 5
    if not digits or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"{key}: port must be a number from 0 to 65535, got {port_text!r}")
    return host, int(port_text)
