"""Configuration: a TOML document validated into frozen dataclasses.

Every key has a default, so the mirror runs with no file at all (Docker Hub upstream,
data in ./data). Unknown keys and bad values raise ConfigError naming the key's path.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from yarl import URL

from mirror.config_edge import (
    AdminConfig,
    AuthConfig,
    ServerConfig,
    parse_admin,
    parse_auth,
    parse_server,
)
from mirror.config_s3 import S3Config, parse_backend
from mirror.config_tables import Section, count, http_url, positive, secret
from mirror.errors import ConfigError
from mirror.units import parse_duration, parse_listen, parse_size

DOCKER_HUB_NAME = "docker.io"
DOCKER_HUB_URL = "https://registry-1.docker.io"

__all__ = [
    "DOCKER_HUB_NAME",
    "DOCKER_HUB_URL",
    "AdminConfig",
    "AuthConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "S3Config",
    "ServerConfig",
    "StorageConfig",
    "UpstreamConfig",
    "load_config",
    "parse_config",
    "parse_listen",
]


@dataclass(frozen=True, slots=True)
class StorageConfig:
    path: Path = Path("./data")
    max_size: int = 0  # bytes; 0 = no bound
    low_water: float = 0.9  # eviction stops below this fraction of max_size
    flush_interval: float = 30.0  # how often batched last-access times reach SQLite
    # Content no client pulled for this long is removed by the janitor (0: never).
    max_unused_age: float = 0.0
    # Repositories or repo:tag patterns (fnmatch) never aged out nor evicted, as written.
    pinned: tuple[str, ...] = ()
    # Where verified blobs live: "filesystem" (blobs/ under path) or "s3" (the bucket in s3).
    # Either way path keeps the index and the fills' temp files.
    backend: str = "filesystem"
    s3: S3Config | None = None


DEFAULT_STALE_AFTER = 5.0


@dataclass(frozen=True, slots=True)
class CacheConfig:
    tag_ttl: float = 600.0
    # A cached tag whose upstream has not answered within this long is served stale while the
    # resolution goes on in the background.
    stale_after: float = DEFAULT_STALE_AFTER
    # Blob downloads running at once (0: no bound), and started by one client address.
    max_concurrent_fills: int = 64
    max_fills_per_client: int = 0
    # false: a miss for a blob no cached manifest references is refused, not fetched.
    fetch_unreferenced_blobs: bool = True


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    name: str = DOCKER_HUB_NAME
    url: URL = field(default_factory=lambda: URL(DOCKER_HUB_URL))
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tag_ttl: float | None = None
    offline: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    token_timeout: float = 10.0  # the whole token request, connect to last byte
    # [cache] stale_after, copied here by parse_config: the services see an upstream's
    # config, not the whole Config.
    stale_after: float = DEFAULT_STALE_AFTER

    @property
    def is_docker_hub(self) -> bool:
        """Docker Hub's naming rule (`alpine` is `library/alpine`) applies to this upstream."""
        return self.name == DOCKER_HUB_NAME


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    admin: AdminConfig = field(default_factory=AdminConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    upstreams: tuple[UpstreamConfig, ...] = field(default_factory=lambda: (UpstreamConfig(),))

    def tag_ttl_for(self, upstream: UpstreamConfig) -> float:
        return self.cache.tag_ttl if upstream.tag_ttl is None else upstream.tag_ttl


def _storage(section: Section) -> StorageConfig:
    defaults = StorageConfig()
    path = section.take_str("path")
    max_size = section.take("max_size")
    low_water = section.take("low_water")
    flush = section.take("flush_interval")
    unused = section.take("max_unused_age")
    pinned = _pins(section.take("pinned"), section.key("pinned"))
    backend, s3 = parse_backend(section)
    section.finish()
    if low_water is not None and (
        isinstance(low_water, bool)
        or not isinstance(low_water, int | float)
        or not 0 < low_water <= 1
    ):
        raise ConfigError(f"{section.key('low_water')}: expected a fraction such as 0.9")
    storage = StorageConfig(
        path=Path(path) if path else defaults.path,
        max_size=defaults.max_size
        if max_size is None
        else parse_size(max_size, section.key("max_size")),
        low_water=defaults.low_water if low_water is None else float(low_water),
        flush_interval=defaults.flush_interval
        if flush is None
        else positive(
            parse_duration(flush, section.key("flush_interval")), section, "flush_interval"
        ),
        max_unused_age=0.0
        if unused is None
        else parse_duration(unused, section.key("max_unused_age")),
        pinned=pinned,
        backend=backend,
        s3=s3,
    )
    # A replica reports what it read at most a flush plus a third of the grace later
    # (upkeep/bucket_retention.py): the grace must leave room for that.
    if s3 is not None and s3.delete_grace <= 3 * storage.flush_interval:
        flush = section.key("flush_interval")
        raise ConfigError(f"{section.key('s3')}.delete_grace: must be more than 3 times {flush}")
    return storage


_PIN = re.compile(r"^[a-z0-9._/*?\[\]-]+(:[A-Za-z0-9._*?\[\]-]+)?$")


def _pins(value: object, key: str) -> tuple[str, ...]:
    """`pinned`: repositories or repo:tag patterns, fnmatch-style (`myorg/*`, `alpine:3.*`)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f'{key}: expected a list of strings such as ["library/alpine"]')
    for item in value:
        if not _PIN.fullmatch(item):
            raise ConfigError(f'{key}: {item[:200]!r} is not a repository or "repo:tag" pattern')
    return tuple(value)


def _cache(section: Section) -> CacheConfig:
    defaults = CacheConfig()
    ttl = section.take("tag_ttl")
    stale_after = section.take("stale_after")
    fills = count(section, "max_concurrent_fills", defaults.max_concurrent_fills)
    per_client = count(section, "max_fills_per_client", defaults.max_fills_per_client)
    unreferenced = section.take_bool("fetch_unreferenced_blobs", True)
    section.finish()
    return CacheConfig(
        max_concurrent_fills=fills,
        max_fills_per_client=per_client,
        fetch_unreferenced_blobs=unreferenced,
        tag_ttl=defaults.tag_ttl if ttl is None else parse_duration(ttl, section.key("tag_ttl")),
        stale_after=defaults.stale_after
        if stale_after is None
        else positive(
            parse_duration(stale_after, section.key("stale_after")), section, "stale_after"
        ),
    )


def _upstream(section: Section) -> UpstreamConfig:
    defaults = UpstreamConfig()
    name = section.take_str("name") or defaults.name
    url_text = section.take_str("url")
    instead = f"{section.key('username')} and {section.key('password')} (or password_file)"
    url = http_url(section, "url", url_text, instead) if url_text else defaults.url
    username = section.take_str("username")
    password = secret(section, "password")
    if (username is None) != (password is None):
        raise ConfigError(f"{section.key('username')}: username and password go together")
    ttl = section.take("tag_ttl")
    connect = section.take("connect_timeout")
    read = section.take("read_timeout")
    token = section.take("token_timeout")
    offline = section.take_bool("offline", False)
    section.finish()
    return UpstreamConfig(
        name=name,
        url=url,
        username=username,
        password=password,
        tag_ttl=None if ttl is None else parse_duration(ttl, section.key("tag_ttl")),
        offline=offline,
        connect_timeout=defaults.connect_timeout
        if connect is None
        else parse_duration(connect, section.key("connect_timeout")),
        read_timeout=defaults.read_timeout
        if read is None
        else parse_duration(read, section.key("read_timeout")),
        token_timeout=defaults.token_timeout
        if token is None
        else positive(
            parse_duration(token, section.key("token_timeout")), section, "token_timeout"
        ),
    )


def parse_config(data: Mapping[str, Any]) -> Config:
    """Validate a TOML document (as a dict) into a Config."""
    root = Section(data, "")
    server = parse_server(Section(root.take("server") or {}, "server"))
    storage = _storage(Section(root.take("storage") or {}, "storage"))
    cache = _cache(Section(root.take("cache") or {}, "cache"))
    admin = parse_admin(Section(root.take("admin") or {}, "admin"), server)
    auth = parse_auth(Section(root.take("auth") or {}, "auth"))
    raw_upstreams = root.take("upstreams")
    root.finish()
    if raw_upstreams is None:
        upstreams: tuple[UpstreamConfig, ...] = (UpstreamConfig(),)
    elif not isinstance(raw_upstreams, list) or not raw_upstreams:
        raise ConfigError("upstreams: expected one or more [[upstreams]] tables")
    else:
        upstreams = tuple(
            _upstream(Section(item, f"upstreams[{index}]"))
            for index, item in enumerate(raw_upstreams)
        )
    upstreams = tuple(replace(upstream, stale_after=cache.stale_after) for upstream in upstreams)
    names = [upstream.name for upstream in upstreams]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigError(f"upstreams[{index}].name: {name!r} is used twice")
    return Config(server, storage, cache, admin, auth, upstreams)


def load_config(path: Path | None) -> Config:
    """Read and validate a TOML file; None gives the embedded defaults."""
    if path is None:
        return Config()
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data)
