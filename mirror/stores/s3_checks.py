"""Whether an object is in the bucket now, and its size: a HEAD on a presigned URL.

Every 307 is preceded by such a check (a client must never be sent to a missing object). A
HEAD through aiobotocore took 1.4-2.4 ms on the bench machine (medians of 300 in a loop against
SeaweedFS: its parameter validation, event hooks, signing, response parsing and retry handler),
most of what a redirect added; the same HEAD on a URL botocore presigned (s3_presign: signed
once per half lifetime) sent with a plain aiohttp session took 0.6-0.8 ms, most of it the
bucket's. The library still signs; nothing here signs by hand.

Only two answers are read here: 200 (there, with its length) and 404 (not there). Any other
answer, or none, is asked again through aiobotocore (`fallback`), whose retries and reading of
errors are the backend's own, so the fast path never decides what a failure means.

Concurrent checks of one digest share one HEAD, but only a HEAD sent after they asked: a check
that arrives while one is in flight waits for the next, which every check arriving meanwhile
shares. So each answer describes the bucket as it was after the request arrived, and a storm of
clients of one layer costs two HEADs in flight at most, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp

from mirror.bucket_metrics import BucketMetrics
from mirror.reference import Digest
from mirror.stores.s3_presign import PresignedUrls

log = logging.getLogger(__name__)

Fallback = Callable[[Digest], Awaitable[int | None]]


@dataclass(slots=True)
class _Rounds:
    """The HEAD in flight for one digest (`current`) and the one after it (`next`)."""

    current: asyncio.Future[int | None]
    next: asyncio.Future[int | None] | None = None
    driver: asyncio.Task[None] | None = field(default=None, repr=False)


class ObjectChecks:
    def __init__(
        self,
        urls: PresignedUrls,
        key: Callable[[Digest], str],
        fallback: Fallback,
        metrics: BucketMetrics | None,
        timeout: aiohttp.ClientTimeout,
    ) -> None:
        self._urls = urls
        self._key = key
        self._fallback = fallback
        self._metrics = metrics
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._rounds: dict[Digest, _Rounds] = {}

    def start(self, host: str | None) -> None:
        """`host`: the endpoint's (None: the provider's own, e.g. AWS). Behind an HTTP proxy
        every check goes through aiobotocore, which honours the proxy settings; reading them at
        each request (aiohttp's trust_env) would cost two thread hops per HEAD."""
        proxies = urllib.request.getproxies()
        if proxies and (host is None or not urllib.request.proxy_bypass(host)):
            log.info("S3 checks go through the library: an HTTP proxy is configured")
            return
        self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        drivers = [rounds.driver for rounds in self._rounds.values() if rounds.driver]
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)
        for rounds in self._rounds.values():  # drivers cancelled before they ever ran
            for waiting in (rounds.current, rounds.next):
                if waiting is not None:
                    waiting.cancel()
        self._rounds.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def size(self, digest: Digest) -> int | None:
        """The object's size, None when the bucket does not have it; asked after this call
        began. Raises what the fallback raises when the bucket cannot answer."""
        rounds = self._rounds.get(digest)
        if rounds is None:
            loop = asyncio.get_running_loop()
            rounds = self._rounds[digest] = _Rounds(current=_future(loop))
            rounds.driver = loop.create_task(self._drive(digest, rounds), name=f"HEAD {digest}")
            answer = rounds.current
        else:  # a HEAD is in flight, sent before this call: wait for the next one
            if rounds.next is None:
                rounds.next = _future(asyncio.get_running_loop())
            answer = rounds.next
        # Shielded: a client that goes away does not cancel the answer others wait for.
        return await asyncio.shield(answer)

    async def _drive(self, digest: Digest, rounds: _Rounds) -> None:
        """HEADs for `digest` while checks keep arriving; owned by this object, not a request."""
        try:
            while True:
                try:
                    rounds.current.set_result(await self._ask(digest))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    rounds.current.set_exception(exc)
                if rounds.next is None:
                    return
                rounds.current, rounds.next = rounds.next, None
        finally:
            del self._rounds[digest]
            for waiting in (rounds.current, rounds.next):
                if waiting is not None and not waiting.done():
                    waiting.cancel()

    async def _ask(self, digest: Digest) -> int | None:
        session = self._session
        if session is None:
            return await self._fallback(digest)
        url = await self._urls.url("head_object", self._key(digest))
        started = time.perf_counter()
        try:
            async with session.head(url, allow_redirects=False) as response:
                status, length = response.status, response.content_length
        except aiohttp.ClientSSLError as exc:
            # Trusted by botocore's CA bundle, not by the system's: the library's way from now.
            self._count(None, started)
            log.warning("S3 checks go through the library from now on: %s", exc)
            self._session = None
            await session.close()
            return await self._fallback(digest)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._count(None, started)
            log.info("HEAD of %s on a presigned URL failed (%s); asking again", digest, exc)
            return await self._fallback(digest)
        self._count(status, started)
        if status == 200 and length is not None:
            return length
        if status == 404:
            return None
        # 403 (a clock or credentials problem), 5xx, a 200 without a length: the library's
        # own request decides, and reports, what it means.
        return await self._fallback(digest)

    def _count(self, status: int | None, started: float) -> None:
        """The fast HEAD counts as a HeadObject, as aiobotocore's would."""
        if self._metrics is None:
            return
        took = time.perf_counter() - started
        if status is None:
            self._metrics.failed("HeadObject", took)
        else:
            self._metrics.answered("HeadObject", status, took)


def _future(loop: asyncio.AbstractEventLoop) -> asyncio.Future[int | None]:
    answer: asyncio.Future[int | None] = loop.create_future()
    # Every waiter may have gone away: an exception nobody awaited is not worth a warning.
    answer.add_done_callback(_retrieved)
    return answer


def _retrieved(answer: asyncio.Future[int | None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        answer.exception()
