"""Tag lists: asked of the upstream; when it cannot answer, the tags this cache knows."""

from __future__ import annotations

import json
from dataclasses import dataclass

from mirror.errors import NameUnknown, UpstreamDenied, UpstreamNotFound, UpstreamUnavailable
from mirror.metrics import Metrics
from mirror.stores.metadata import Metadata
from mirror.upstream.client import UpstreamRegistry


@dataclass(frozen=True, slots=True)
class TagPage:
    body: bytes
    link: str | None  # the `Link: <…>; rel="next"` header for the next page
    stale: bool = False


class TagListService:
    def __init__(self, metadata: Metadata, metrics: Metrics) -> None:
        self._metadata = metadata
        self._metrics = metrics

    async def list(
        self, upstream: UpstreamRegistry, repo: str, n: int | None, last: str | None
    ) -> TagPage:
        query = {key: str(value) for key, value in (("n", n), ("last", last)) if value is not None}
        try:
            body, link = await upstream.get_tags(repo, query)
            return TagPage(body, link)
        except UpstreamNotFound:
            raise NameUnknown(f"repository {repo} is unknown upstream") from None
        except (UpstreamUnavailable, UpstreamDenied):
            # Auth failures too: a broken token path must not hide the tags we know.
            known = await self._metadata.list_tags(upstream.name, repo)
            if not known:
                raise
            self._metrics.stale_served.inc()
            return paginate(repo, known, n, last, stale=True)


def paginate(repo: str, tags: list[str], n: int | None, last: str | None, stale: bool) -> TagPage:
    """The distribution API's pagination: tags after `last`, at most `n`, sorted."""
    remaining = sorted(tag for tag in tags if last is None or tag > last)
    page = remaining if n is None else remaining[:n]
    link = None
    if n is not None and len(remaining) > n and page:
        link = f'</v2/{repo}/tags/list?n={n}&last={page[-1]}>; rel="next"'
    body = json.dumps({"name": repo, "tags": page}).encode()
    return TagPage(body, link, stale)
