"""Bounds on the downloads clients can make the mirror start: in all, and per client address.

A client joining a running download costs one more reader, not one more download, so only
starting a fill counts. Over a bound the client gets 429 TOOMANYREQUESTS with Retry-After:
Docker, containerd and podman retry a layer that answers it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from mirror.errors import TooManyRequests
from mirror.metrics import Metrics

RETRY_AFTER = 2  # seconds: about what one layer of a busy mirror takes to download


class FillLimits:
    def __init__(self, total: int, per_client: int, metrics: Metrics) -> None:
        self._total = total
        self._per_client = per_client
        self._metrics = metrics
        self._by_client: Counter[str] = Counter()

    def start(self, running: int, client: str | None) -> Callable[[], None]:
        """Count a new fill started for `client` (raise when over a bound); call the returned
        function once when it ends, however it ends."""
        if self._total and running >= self._total:
            self._metrics.fills_refused.labels("busy").inc()
            raise TooManyRequests(
                f"the mirror is downloading {running} blobs, its bound"
                " (cache.max_concurrent_fills); try again shortly",
                RETRY_AFTER,
            )
        if self._per_client and client is not None:
            if self._by_client[client] >= self._per_client:
                self._metrics.fills_refused.labels("client").inc()
                raise TooManyRequests(
                    f"this client started {self._by_client[client]} downloads that still run,"
                    " its bound (cache.max_fills_per_client); try again shortly",
                    RETRY_AFTER,
                )
            self._by_client[client] += 1
            released = False

            def ended() -> None:  # once, whichever of the fill's end and its task's comes first
                nonlocal released
                if not released:
                    released = True
                    self._ended(client)

            return ended
        return _nothing

    def _ended(self, client: str) -> None:
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]  # a dict of every address ever seen would only grow


def _nothing() -> None:
    return None
