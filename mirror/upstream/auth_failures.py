"""Auth failures remembered, so that they are not repeated upstream for every client."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mirror.errors import UpstreamDenied, UpstreamUnavailable
from mirror.metrics import Metrics

log = logging.getLogger(__name__)

# The auth path is broken (token server down, failing, hanging, or its fresh tokens rejected):
# no new token is asked for this long, for any repository; cached tags are served stale.
AUTH_COOLDOWN = 30.0
# The upstream refused us a repository (token server 401/403, 401/403 with a fresh token):
# that repository is not asked again for this long (DENIED for a client, stale if cached).
DENIED_FOR = 60.0
MAX_DENIED = 4096  # remembered refusals; the oldest go first


class AuthFailures:
    """Two memories of one upstream: the auth path is broken (upstream-wide, for a while), and
    which repositories it refused us (each for a while)."""

    def __init__(self, name: str, clock: Callable[[], float], metrics: Metrics) -> None:
        self._name = name
        self._clock = clock
        self._metrics = metrics
        # Until when, and why, no new token is asked for (the auth path failed).
        self._broken: tuple[float, str] | None = None
        # Scopes the upstream refused us, each until when (insertion order = expiry order).
        self._denied: dict[str, float] = {}

    def token_issued(self) -> None:
        self._broken = None

    def check_auth(self) -> None:
        """Raise at once while the auth path is known to be broken."""
        if self._broken is None:
            return
        until, why = self._broken
        if self._clock() >= until:
            self._broken = None
            return
        raise UpstreamUnavailable(
            self._name, "cooldown", f"{why}; not asked again for {until - self._clock():.0f}s"
        )

    def check_denied(self, scope: str) -> None:
        """Raise at once for a repository the upstream refused us a moment ago."""
        until = self._denied.get(scope)
        if until is None:
            return
        if self._clock() >= until:
            del self._denied[scope]
            return
        self._metrics.upstream_errors.labels(self._name, "cooldown").inc()
        raise UpstreamDenied(f"upstream {self._name} denied access")

    def auth_failed(self, why: str) -> UpstreamUnavailable:
        """The auth path is broken: no new token for AUTH_COOLDOWN, for any repository."""
        self._broken = (self._clock() + AUTH_COOLDOWN, why)
        log.warning("upstream %s: %s; no new token asked for %.0fs", self._name, why, AUTH_COOLDOWN)
        return UpstreamUnavailable(self._name, "auth", why)

    def deny(self, scope: str, why: str) -> UpstreamDenied:
        """This repository is refused us: not asked again for DENIED_FOR."""
        now = self._clock()
        self._metrics.upstream_errors.labels(self._name, "denied").inc()
        self._denied.pop(scope, None)
        while self._denied:  # the oldest expire first
            first, until = next(iter(self._denied.items()))
            if until > now and len(self._denied) < MAX_DENIED:
                break
            del self._denied[first]
        self._denied[scope] = now + DENIED_FOR
        log.info(
            "upstream %s %s for %s; not asked again for %.0fs", self._name, why, scope, DENIED_FOR
        )
        return UpstreamDenied(f"upstream {self._name} {why}")
