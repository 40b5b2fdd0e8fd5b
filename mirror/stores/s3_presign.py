"""Presigned URLs of the bucket's objects, signed by botocore and reused while more than half
of their lifetime remains.

Presigning is pure CPU (about 0.17 ms on the bench machine: botocore's request model and an
HMAC chain), and a replica that redirects every hit would sign the same URL again for every
client of a popular layer, and once more for the HEAD that precedes each 307. A URL handed out
from here is valid for at least half of `presign_ttl`; a client follows a 307 at once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Literal

# Enough for every blob a busy replica redirects to within half a presign_ttl; oldest go first.
MAX_ENTRIES = 65536

Operation = Literal["get_object", "head_object"]
# botocore's presigner: (operation, key, seconds valid) -> URL.
Sign = Callable[[Operation, str, int], Awaitable[str]]


class PresignedUrls:
    def __init__(self, sign: Sign, ttl: float, clock: Callable[[], float]) -> None:
        self._sign = sign
        self._ttl = ttl
        self._clock = clock
        # (operation, key) -> (URL, when it was signed), least recently signed first
        self._urls: OrderedDict[tuple[Operation, str], tuple[str, float]] = OrderedDict()

    async def url(self, operation: Operation, key: str) -> str:
        """A URL for `operation` on `key`, valid for at least another ttl / 2 seconds."""
        now = self._clock()
        cached = self._urls.get((operation, key))
        # A clock that went back (now < signed) is not trusted to say the URL is young.
        if cached is not None and 0 <= now - cached[1] < self._ttl / 2:
            return cached[0]
        url = await self._sign(operation, key, int(self._ttl))
        # Signed at `now` or later: an age counted from `now` errs on the safe side.
        self._urls.pop((operation, key), None)
        self._urls[(operation, key)] = (url, now)
        while len(self._urls) > MAX_ENTRIES:
            self._urls.popitem(last=False)
        return url
