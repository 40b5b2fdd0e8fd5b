"""Registry auth: parse WWW-Authenticate challenges and cache tokens per scope until expiry."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from mirror.errors import TokenRefused, TokenServerFailed

_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
DEFAULT_TOKEN_LIFETIME = 60.0  # the token spec's default for a missing expires_in
EXPIRY_MARGIN = 0.9  # renew a little before the upstream's clock says it expired
MAX_TOKEN_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str  # "bearer" or "basic"
    realm: str
    service: str | None
    scope: str | None


def parse_challenge(header: str) -> Challenge | None:
    """`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="…"`."""
    scheme, _, rest = header.strip().partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "basic"):
        return None
    # A quoted value's backslash escapes are undone (RFC 9110 quoted-pair): realm="a\"b" is
    # a"b, not a\"b as before.
    params = {
        key.lower(): re.sub(r"\\(.)", r"\1", quoted) or bare
        for key, quoted, bare in _PARAM.findall(rest)
    }
    realm = params.get("realm", "")
    if scheme == "bearer" and not realm:
        return None
    return Challenge(scheme, realm, params.get("service"), params.get("scope"))


def challenge_error(header: str) -> str | None:
    """RFC 6750's `error` of a Bearer challenge: `invalid_token` (the token was not accepted
    at all: bad signature, expired, revoked) or `insufficient_scope` (a good token without
    this repository's grant); None when absent or not a Bearer challenge."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    for key, quoted, bare in _PARAM.findall(rest):
        if key.lower() == "error":
            return str(quoted or bare)
    return None


class TokenCache:
    """Authorization header values per scope, each kept until it expires."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[str, float]] = {}

    def get(self, scope: str) -> str | None:
        entry = self._entries.get(scope)
        if entry is None:
            return None
        value, expires_at = entry
        if self._clock() >= expires_at:
            del self._entries[scope]
            return None
        return value

    def forget(self, scope: str) -> None:
        """Drop a value the upstream rejected, so that it is not sent again."""
        self._entries.pop(scope, None)

    def put_basic(self, scope: str, authorization: str) -> str:
        self._entries[scope] = (authorization, float("inf"))
        return authorization

    async def fetch_bearer(
        self,
        session: aiohttp.ClientSession,
        challenge: Challenge,
        scope: str,
        credentials: str | None,
        deadline: float,
    ) -> str:
        """Ask the challenge's realm for a token; TokenRefused when it refuses our credentials,
        TokenServerFailed when it answers anything else but a token, TimeoutError when the
        whole exchange (connect, answer, body) takes more than `deadline` seconds."""
        query: dict[str, str] = {"scope": challenge.scope or scope}
        if challenge.service:
            query["service"] = challenge.service
        url = URL(challenge.realm).update_query(query)
        # The session leaves bodies compressed (blob bytes must match their digest): ask the
        # token server for plain JSON.
        headers = {"Accept-Encoding": "identity"}
        if credentials:
            headers["Authorization"] = credentials
        # A deadline of its own: a token server that hangs must not cost the read timeout.
        timeout = aiohttp.ClientTimeout(total=deadline)
        async with session.get(
            url, headers=headers, allow_redirects=False, timeout=timeout
        ) as response:
            if response.status in (401, 403):
                raise TokenRefused(f"token server answered {response.status}")
            if response.status != 200:
                raise TokenServerFailed(f"token server answered {response.status}")
            body = b""
            while len(body) <= MAX_TOKEN_BYTES:
                chunk = await response.content.read(MAX_TOKEN_BYTES + 1 - len(body))
                if not chunk:
                    break
                body += chunk
        if len(body) > MAX_TOKEN_BYTES:
            raise TokenServerFailed("token response is too large")
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            raise TokenServerFailed("token response is not JSON") from None
        if not isinstance(payload, dict):
            raise TokenServerFailed("token response is not an object")
        token = payload.get("token") or payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise TokenServerFailed("token response has no token")
        lifetime = payload.get("expires_in")
        if not isinstance(lifetime, int | float) or lifetime <= 0:
            lifetime = DEFAULT_TOKEN_LIFETIME
        value = f"Bearer {token}"
        self._entries[scope] = (value, self._clock() + float(lifetime) * EXPIRY_MARGIN)
        return value
