"""Reading one TOML table of the config: typed keys, unknown keys named (with "did you mean")."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yarl import URL

from mirror.errors import ConfigError


class Section:
    """One TOML table being read: takes known keys, then rejects whatever is left."""

    def __init__(self, data: object, path: str) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path}: expected a table, got {type(data).__name__}")
        self._data = dict(data)
        self.path = path
        self._known: list[str] = []  # every key asked for, for "did you mean"

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def take(self, name: str) -> Any:
        self._known.append(name)
        return self._data.pop(name, None)

    def take_str(self, name: str) -> str | None:
        value = self.take(name)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{self.key(name)}: expected a string, got {value!r}")
        return value

    def take_bool(self, name: str, default: bool) -> bool:
        value = self.take(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ConfigError(f"{self.key(name)}: expected true or false, got {value!r}")
        return value

    def finish(self) -> None:
        if self._data:
            unknown = sorted(self._data)[0]
            close = difflib.get_close_matches(unknown, self._known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{self.key(unknown)}: unknown key{hint}")


def positive(seconds: float, section: Section, name: str) -> float:
    if seconds <= 0:
        raise ConfigError(f"{section.key(name)}: must be more than 0")
    return seconds


def secret(section: Section, name: str) -> str | None:
    """A secret given inline (`name`) or, better, in a file (`name_file`, a mounted secret)."""
    value = section.take_str(name)
    path = section.take_str(f"{name}_file")
    if path is None:
        return value
    if value is not None:
        raise ConfigError(f"{section.key(name + '_file')}: set {name} or {name}_file, not both")
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{section.key(name + '_file')}: cannot read: {exc.strerror}") from None


def count(section: Section, name: str, default: int) -> int:
    """A whole number from 0 (0: no bound) to a million."""
    value = section.take(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1_000_000:
        raise ConfigError(f"{section.key(name)}: expected a whole number from 0, got {value!r}")
    return value


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(section: Section, name: str) -> tuple[Network, ...]:
    """A list of networks ("10.0.0.0/8", "fd00::/8", or one address) as parsed networks."""
    value = section.take(name)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f'{section.key(name)}: expected a list such as ["10.0.0.0/8"]')
    parsed: list[Network] = []
    for index, item in enumerate(value):
        try:
            if not isinstance(item, str):
                raise TypeError(item)
            parsed.append(ipaddress.ip_network(item, strict=False))
        except (TypeError, ValueError):
            raise ConfigError(
                f"{section.key(name)}[{index}]: expected a network such as 10.0.0.0/8, "
                f"got {str(item)[:100]!r}"
            ) from None
    return tuple(parsed)


def http_url(section: Section, name: str, text: str, instead: str) -> URL:
    """An http:// or https:// URL with a host and no `user:password@` (`instead` names the
    keys credentials go in). The refusal never echoes what was written."""
    url = URL(text)
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"{section.key(name)}: expected an http:// or https:// URL")
    if url.raw_user is not None or url.raw_password is not None:
        raise ConfigError(f"{section.key(name)}: no credentials in the URL; set {instead}")
    return url
