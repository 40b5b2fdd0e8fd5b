"""Tag lists: asked of the upstream; when it cannot answer, the tags this cache knows (with a
bucket: the tags any replica recorded there, one LIST however many clients ask at once)."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from functools import partial

from mirror.errors import NameUnknown, UpstreamDenied, UpstreamNotFound, UpstreamUnavailable
from mirror.metrics import Metrics
from mirror.services.singleflight import SingleFlight
from mirror.stores.shared_index import SharedIndex
from mirror.upstream.client import UpstreamRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TagPage:
    body: bytes
    link: str | None  # the `Link: <…>; rel="next"` header for the next page
    stale: bool = False


class TagListService:
    def __init__(self, index: SharedIndex, metrics: Metrics) -> None:
        self._index = index
        self._metadata = index.metadata
        self._metrics = metrics
        # The fallback's lookups: a storm of clients while the upstream is down lists the
        # bucket once, not once per client.
        self._known: SingleFlight[list[str]] = SingleFlight()

    async def close(self) -> None:
        await self._known.close()

    async def list(
        self, upstream: UpstreamRegistry, repo: str, n: int | None, last: str | None
    ) -> TagPage:
        query = {key: str(value) for key, value in (("n", n), ("last", last)) if value is not None}
        # The tags this cache knows are the stale answer; with one at hand, the upstream gets
        # `stale_after` to answer (a tag list is not cached, so nothing goes on afterwards).
        known = await self._metadata.list_tags(upstream.name, repo)
        deadline = asyncio.timeout(upstream.config.stale_after if known else None)
        try:
            async with deadline:
                body, link = await upstream.get_tags(repo, query)
            return TagPage(body, link)
        except UpstreamNotFound:
            raise NameUnknown(f"repository {repo} is unknown upstream") from None
        except (UpstreamUnavailable, UpstreamDenied, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and not deadline.expired():
                raise
            # Auth failures too: a broken token path must not hide the tags we know. With a
            # bucket, the tags other replicas recorded count (asked only now: not on the way
            # of every answer the upstream gives).
            known = await self._known.run(
                (upstream.name, repo), partial(self._index.known_tags, upstream.name, repo)
            )
            if not known:
                raise
            log.warning("serving the tags of %s from cache: %s", repo, _why(exc, upstream))
            self._metrics.stale_served.inc()
            return paginate(repo, known, n, last, stale=True)


def _why(exc: Exception, upstream: UpstreamRegistry) -> str:
    if isinstance(exc, TimeoutError):
        return f"upstream {upstream.name} did not answer within {upstream.config.stale_after:g}s"
    return str(exc)


def paginate(repo: str, tags: list[str], n: int | None, last: str | None, stale: bool) -> TagPage:
    """The distribution API's pagination: tags after `last`, at most `n`, sorted."""
    remaining = sorted(tag for tag in tags if last is None or tag > last)
    page = remaining if n is None else remaining[:n]
    link = None
    if n is not None and len(remaining) > n and page:
        link = f'</v2/{repo}/tags/list?n={n}&last={page[-1]}>; rel="next"'
    body = json.dumps({"name": repo, "tags": page}).encode()
    return TagPage(body, link, stale)
