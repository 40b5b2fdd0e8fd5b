"""The remote side: one upstream registry, its token dance, redirects, rate limits and cool-down."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import aiohttp
from yarl import URL

from mirror import __version__
from mirror.config import UpstreamConfig
from mirror.errors import (
    TokenRefused,
    TokenServerFailed,
    UpstreamDenied,
    UpstreamNotFound,
    UpstreamUnavailable,
)
from mirror.metrics import Metrics
from mirror.reference import Digest, Reference
from mirror.upstream.auth import TokenCache, challenge_error, parse_challenge
from mirror.upstream.auth_failures import AuthFailures
from mirror.upstream.responses import (
    FetchedManifest,
    RateLimit,
    accept_headers,
    content_digest,
    media_type,
    rate_limit,
    request_kind,
    retry_after,
)

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 4 * 1024 * 1024  # distribution refuses larger manifests too
MAX_REDIRECTS = 5
DEFAULT_COOLDOWN = 60.0  # a 429 without Retry-After
USER_AGENT = f"mirror/{__version__} (pull-through cache)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class UpstreamRegistry:
    """Speaks the distribution API to one upstream; raises UpstreamUnavailable/NotFound/Denied."""

    def __init__(
        self, config: UpstreamConfig, clock: Callable[[], float], metrics: Metrics
    ) -> None:
        self.config = config
        self.name = config.name
        self._clock = clock
        self._metrics = metrics
        self._tokens = TokenCache(clock)
        self._session: aiohttp.ClientSession | None = None
        self._cooldown_until = 0.0
        self._failures = AuthFailures(self.name, clock, metrics)
        self.rate_limit = RateLimit()
        metrics.add_upstream(self.name)  # every per-upstream series exists from the start
        metrics.cooldown.labels(self.name).set_function(lambda: float(self.cooling_down))

    async def start(self) -> None:
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=self.config.connect_timeout,
            sock_read=self.config.read_timeout,
        )
        # auto_decompress=False: blob bytes must reach the store exactly as the digest says.
        # trust_env: HTTPS_PROXY / NO_PROXY apply, as operators behind a proxy expect.
        self._session = aiohttp.ClientSession(
            timeout=timeout,
            auto_decompress=False,
            trust_env=True,
            headers={"User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def cooling_down(self) -> bool:
        return self._clock() < self._cooldown_until

    # -- the distribution API -------------------------------------------------------------

    async def head_manifest(
        self, repo: str, ref: Reference, accept: Sequence[str]
    ) -> Digest | None:
        """The digest the upstream serves for a reference (None if it does not say)."""
        path = f"/v2/{repo}/manifests/{ref}"
        async with self._request("HEAD", path, repo, accept_headers(accept)) as response:
            self._expect_ok(response)
            return content_digest(response)

    async def get_manifest(
        self, repo: str, ref: Reference, accept: Sequence[str]
    ) -> FetchedManifest:
        path = f"/v2/{repo}/manifests/{ref}"
        async with self._request("GET", path, repo, accept_headers(accept)) as response:
            self._expect_ok(response)
            length = response.content_length
            if length is not None and length > MAX_MANIFEST_BYTES:
                raise UpstreamUnavailable(self.name, "invalid", "manifest too large")
            body = await self._read_limited(response, MAX_MANIFEST_BYTES)
            return FetchedManifest(
                body=body,
                media_type=media_type(response),
                digest=content_digest(response),
            )

    async def head_blob(self, repo: str, digest: Digest) -> int | None:
        """The blob's size if the upstream holds it under this repository."""
        async with self._request("HEAD", f"/v2/{repo}/blobs/{digest}", repo, {}) as response:
            self._expect_ok(response)
            return response.content_length

    @asynccontextmanager
    async def open_blob(self, repo: str, digest: Digest) -> AsyncIterator[aiohttp.ClientResponse]:
        """A 200 response whose body is the blob; the caller streams it."""
        async with self._request("GET", f"/v2/{repo}/blobs/{digest}", repo, {}) as response:
            self._expect_ok(response)
            yield response

    async def get_tags(self, repo: str, query: Mapping[str, str]) -> tuple[bytes, str | None]:
        """The upstream's tag list body and its Link header (pagination)."""
        path = str(URL(f"/v2/{repo}/tags/list").with_query(query))
        async with self._request("GET", path, repo, {}) as response:
            self._expect_ok(response)
            body = await self._read_limited(response, MAX_MANIFEST_BYTES)
            return body, response.headers.get("Link")

    # -- plumbing -------------------------------------------------------------------------

    @asynccontextmanager
    async def _request(
        self, method: str, path: str, repo: str, headers: Mapping[str, str]
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """One logical request: auth challenge answered once, redirects followed by hand."""
        kind = request_kind(path)
        started = time.perf_counter()
        try:
            if self.config.offline:
                raise UpstreamUnavailable(self.name, "offline", "configured offline")
            if self.cooling_down:
                raise UpstreamUnavailable(self.name, "cooldown", "rate-limited, cooling down")
            scope = f"repository:{repo}:pull"
            self._failures.check_denied(scope)
            authorization = self._tokens.get(scope)
            if authorization is None:
                self._failures.check_auth()  # this request would need a token we cannot get now
            url = self.config.url.join(URL(path))
            response = await self._send(method, url, headers, authorization)
            fresh = False
            if response.status == 401 and response.url.origin() == self.config.url.origin():
                challenge = response.headers.get("WWW-Authenticate", "")
                response.release()
                if authorization is not None:
                    self._tokens.forget(scope)  # expired or revoked upstream: never again
                    self._failures.check_auth()
                authorization = await self._authorize(challenge, scope)
                response = await self._send(method, url, headers, authorization)
                fresh = True
        except UpstreamUnavailable as exc:
            self._metrics.upstream_errors.labels(self.name, exc.reason).inc()
            raise
        self._metrics.upstream_requests.labels(self.name, kind, str(response.status)).inc()
        self._metrics.upstream_duration.labels(self.name, kind).observe(
            time.perf_counter() - started
        )
        try:
            if response.status in (401, 403):
                if response.url.origin() != self.config.url.origin():
                    # A redirect target (a CDN) refusing a signed URL says nothing about
                    # our access to the repository: not remembered.
                    raise UpstreamDenied(f"upstream {self.name} denied access ({response.status})")
                self._refused(response, scope, fresh)
            self._note_rate_limit(response)
            yield response
        except UpstreamUnavailable as exc:
            self._metrics.upstream_errors.labels(self.name, exc.reason).inc()
            raise
        finally:
            response.release()

    async def _send(
        self, method: str, url: URL, headers: Mapping[str, str], authorization: str | None
    ) -> aiohttp.ClientResponse:
        """Send and follow redirects; Authorization never leaves the upstream's origin."""
        assert self._session is not None, "UpstreamRegistry.start() was not awaited"
        origin = self.config.url.origin()
        for _ in range(MAX_REDIRECTS + 1):
            request_headers = dict(headers)
            if authorization and url.origin() == origin:
                request_headers["Authorization"] = authorization
            try:
                response = await self._session.request(
                    method, url, headers=request_headers, allow_redirects=False
                )
            except TimeoutError:
                raise UpstreamUnavailable(self.name, "timeout", f"timed out: {url.host}") from None
            except aiohttp.ClientError as exc:
                raise UpstreamUnavailable(
                    self.name, "connect", f"{type(exc).__name__} to {url.host}"
                ) from None
            if response.status not in _REDIRECTS or "Location" not in response.headers:
                return response
            url = url.join(URL(response.headers["Location"], encoded=True))
            response.release()
        raise UpstreamUnavailable(self.name, "redirects", "too many redirects")

    async def _authorize(self, challenge_header: str, scope: str) -> str:
        challenge = parse_challenge(challenge_header)
        if challenge is None:
            raise self._failures.deny(scope, "denied access")
        credentials = self._credentials()
        if challenge.scheme == "basic":
            if credentials is None:
                raise self._failures.deny(scope, "needs credentials")
            return self._tokens.put_basic(scope, credentials)
        assert self._session is not None
        try:
            token = await self._tokens.fetch_bearer(
                self._session, challenge, scope, credentials, self.config.token_timeout
            )
        except TimeoutError:
            raise self._failures.auth_failed(
                f"token server did not answer within {self.config.token_timeout:g}s"
            ) from None
        except (aiohttp.ClientError, TokenServerFailed) as exc:
            why = str(exc) if isinstance(exc, TokenServerFailed) else type(exc).__name__
            raise self._failures.auth_failed(f"token server failed: {why}") from None
        except TokenRefused as exc:
            raise self._failures.deny(scope, f"token server refused us ({exc})") from None
        self._metrics.upstream_requests.labels(self.name, "token", "200").inc()
        self._failures.token_issued()
        return token

    def _refused(self, response: aiohttp.ClientResponse, scope: str, fresh: bool) -> None:
        """A final 401 or 403. A token the token server has just issued and the registry calls
        invalid (RFC 6750 `invalid_token`) means the auth path is broken; anything else is a
        refusal of this repository (Docker Hub: `insufficient_scope` for private or unknown)."""
        self._tokens.forget(scope)
        challenge = response.headers.get("WWW-Authenticate", "")
        if response.status == 401 and fresh and challenge_error(challenge) == "invalid_token":
            raise self._failures.auth_failed(
                "the upstream rejected a token just issued (invalid_token)"
            )
        raise self._failures.deny(scope, f"denied access ({response.status})")

    def _credentials(self) -> str | None:
        """The configured credentials as a `Basic …` header value."""
        if self.config.username is None or self.config.password is None:
            return None
        return aiohttp.encode_basic_auth(self.config.username, self.config.password)

    def _expect_ok(self, response: aiohttp.ClientResponse) -> None:
        status = response.status
        if 200 <= status < 300:
            return
        if status in (400, 404, 406, 410):
            raise UpstreamNotFound(self.name)
        if status == 429:
            now = self._clock()
            wait = retry_after(response.headers.get("Retry-After"), now, DEFAULT_COOLDOWN)
            self._cooldown_until = now + wait
            log.warning("upstream %s rate-limited us; cooling down %.0fs", self.name, wait)
            raise UpstreamUnavailable(self.name, "ratelimited", "429 too many requests")
        raise UpstreamUnavailable(self.name, "status", f"answered {status}")

    def _note_rate_limit(self, response: aiohttp.ClientResponse) -> None:
        noted = rate_limit(response)
        if noted is None:
            return
        self.rate_limit = noted
        if noted.limit is not None:
            self._metrics.ratelimit_limit.labels(self.name).set(noted.limit)
        if noted.remaining is not None:
            self._metrics.ratelimit_remaining.labels(self.name).set(noted.remaining)

    async def _read_limited(self, response: aiohttp.ClientResponse, limit: int) -> bytes:
        try:
            body = await response.content.read(limit + 1)
            while len(body) <= limit and not response.content.at_eof():
                chunk = await response.content.read(limit + 1 - len(body))
                if not chunk:
                    break
                body += chunk
        except (aiohttp.ClientError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise UpstreamUnavailable(
                self.name, "read", f"reading body failed: {type(exc).__name__}"
            ) from None
        if len(body) > limit:
            raise UpstreamUnavailable(self.name, "invalid", "response too large")
        return body
