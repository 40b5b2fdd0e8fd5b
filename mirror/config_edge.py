"""The settings of the server's edge: where it listens, TLS, who may pull, the admin port.

Parsed here, assembled into the Config in config.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mirror.config_tables import Network, Section, networks, secret
from mirror.errors import ConfigError
from mirror.units import parse_listen

LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "0.0.0.0"
    port: int = 5000
    log_format: str = "text"
    # PEM files (the certificate may carry its chain); both or neither. Reloaded while serving.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Networks whose clients may pull (empty: everyone), and the proxies whose
    # X-Forwarded-For is believed when they connect.
    allow: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()


@dataclass(frozen=True, slots=True)
class AdminConfig:
    token: str | None = field(default=None, repr=False)  # None: the admin API answers 404
    # A port of its own for /admin/, /metrics and the health checks (None: the pull port).
    listen: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class AuthConfig:
    htpasswd: Path | None = None  # bcrypt users who may pull; None: no credentials asked


def parse_server(section: Section) -> ServerConfig:
    defaults = ServerConfig()
    listen = section.take("listen")
    log_format = section.take_str("log_format") or defaults.log_format
    tls_cert = section.take_str("tls_cert")
    tls_key = section.take_str("tls_key")
    allow = networks(section, "allow")
    trusted_proxies = networks(section, "trusted_proxies")
    section.finish()
    if log_format not in LOG_FORMATS:
        raise ConfigError(f'{section.key("log_format")}: expected "text" or "json"')
    if (tls_cert is None) != (tls_key is None):
        raise ConfigError(f"{section.key('tls_key')}: tls_cert and tls_key go together")
    host, port = (
        (defaults.host, defaults.port)
        if listen is None
        else parse_listen(listen, section.key("listen"))
    )
    return ServerConfig(
        host=host,
        port=port,
        log_format=log_format,
        tls_cert=None if tls_cert is None else Path(tls_cert),
        tls_key=None if tls_key is None else Path(tls_key),
        allow=allow,
        trusted_proxies=trusted_proxies,
    )


def parse_admin(section: Section, server: ServerConfig) -> AdminConfig:
    token = secret(section, "token")
    listen_text = section.take("listen")
    section.finish()
    if token is not None and len(token) < 16:
        raise ConfigError(f"{section.key('token')}: use at least 16 characters")
    listen = None if listen_text is None else parse_listen(listen_text, section.key("listen"))
    if listen is not None and listen[1] == server.port:
        raise ConfigError(f"{section.key('listen')}: use another port than server.listen")
    return AdminConfig(token=token, listen=listen)


def parse_auth(section: Section) -> AuthConfig:
    htpasswd = section.take_str("htpasswd")
    section.finish()
    return AuthConfig(htpasswd=None if htpasswd is None else Path(htpasswd))
