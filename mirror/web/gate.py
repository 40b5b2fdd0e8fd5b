"""Who may reach what: the admin port's own routes, networks allowed to pull, pull users.

All of it is off by default. The rules apply to the pull API (`/v2/`); the health checks
answer everyone (probes come from the node), and `/admin/` keeps its own bearer token.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from mirror.config import Config
from mirror.config_tables import Network
from mirror.errors import CredentialsRequired, Denied, NotFound
from mirror.web.htpasswd import Htpasswd

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
HEALTH = ("/healthz", "/readyz")


class PullGate:
    def __init__(self, config: Config) -> None:
        self._allow = config.server.allow
        self._proxies = config.server.trusted_proxies
        self._admin_port = None if config.admin.listen is None else config.admin.listen[1]
        htpasswd = config.auth.htpasswd
        self._users = None if htpasswd is None else Htpasswd(htpasswd)

    @property
    def active(self) -> bool:
        """Whether any rule is configured (all are off by default)."""
        return bool(self._allow or self._admin_port is not None or self._users is not None)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        operator = path.startswith("/admin/") or path == "/metrics"
        if self._admin_port is not None:
            if _local_port(request) == self._admin_port:
                if not (operator or path in HEALTH):
                    raise NotFound("the admin port serves /admin/, /metrics and health checks")
                return await handler(request)
            if operator:
                raise NotFound("served on the admin port")
        if path.startswith("/v2"):
            if self._allow and not _within(self.client_address(request), self._allow):
                raise Denied("this network may not pull from the mirror")
            if self._users is not None and not await self._authenticated(request):
                raise CredentialsRequired("valid credentials are required")
        return await handler(request)

    def client_address(self, request: web.Request) -> Address | None:
        """The peer; behind a trusted proxy, the last address in X-Forwarded-For that is not
        one of the trusted proxies (those to its left could be forged by the client)."""
        peer = _address(request.remote)
        if peer is None or not self._proxies or not _within(peer, self._proxies):
            return peer
        hops = ",".join(request.headers.getall("X-Forwarded-For", [])).split(",")
        for hop in reversed(hops):
            address = _address(hop.strip())
            if address is None:
                return peer  # a header we cannot read: judge the proxy itself
            if not _within(address, self._proxies):
                return address
        return peer

    async def _authenticated(self, request: web.Request) -> bool:
        assert self._users is not None
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            # A str with non-ASCII characters is a ValueError, not a binascii.Error.
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, ValueError):
            return False
        user, colon, password = decoded.partition(":")
        client = self.client_address(request)
        return bool(colon) and await self._users.check(user, password, str(client))


def _local_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


def _address(text: str | None) -> Address | None:
    try:
        address = ipaddress.ip_address(text or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


def _within(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)
