"""The catalog in the admin API: what is cached, by repository, behind the admin token.

`GET /admin/catalog[?upstream=&prefix=&n=&last=]`: a page of repositories, in (upstream, name)
order; `next` in the answer is the `last` of the following page (null on the last page), as the
registry's `Link` header is for `_catalog`. `GET /admin/catalog/{repository}[?upstream=]`: one
repository's totals and tags.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from mirror.errors import NameUnknown, PaginationInvalid
from mirror.stores.catalog import parse_cursor
from mirror.web.admin_api import guarded
from mirror.web.appkeys import MIRROR

DEFAULT_PAGE = 100
# Each repository on a page costs a few aggregates: a larger `n` is clamped to this (the answer
# then says where the next page starts, as for any page).
MAX_PAGE = 1000
_DIGITS = re.compile(r"[0-9]+")


def page_size(text: str | None) -> int:
    """`n`: ASCII digits only, at least 1, clamped to MAX_PAGE without int() on a long text."""
    if text is None:
        return DEFAULT_PAGE
    if not _DIGITS.fullmatch(text) or not text.strip("0"):
        raise PaginationInvalid(
            f"n must be an integer from 1 to {MAX_PAGE}, got {text[:20]!r}",
            detail={"n": text[:20]},
        )
    digits = text.lstrip("0")
    return MAX_PAGE if len(digits) > len(str(MAX_PAGE)) else min(int(digits), MAX_PAGE)


def _upstream_filter(request: web.Request) -> str | None:
    """The `upstream` asked for, if any; a name no upstream has is a 404, not an empty list."""
    name = request.query.get("upstream")
    if name is not None and request.app[MIRROR].router.get(name) is None:
        raise NameUnknown(f"no upstream named {name[:100]!r}")
    return name


async def catalog(request: web.Request) -> dict[str, Any]:
    n = page_size(request.query.get("n"))
    upstream = _upstream_filter(request)
    prefix = request.query.get("prefix", "")
    after = ("", "")
    last = request.query.get("last")
    if last is not None:
        cursor = parse_cursor(last, upstream)
        if cursor is None:
            raise PaginationInvalid(
                "last must be a `next` from a previous page (UPSTREAM:REPOSITORY), or a "
                "repository name with upstream=",
                detail={"last": last[:100]},
            )
        after = cursor
    catalog = request.app[MIRROR].stores.catalog
    page = await catalog.repositories(n, upstream=upstream, prefix=prefix, after=after)
    return page.as_dict()


async def repository(request: web.Request) -> dict[str, Any]:
    """Named as a client pulls it: `alpine` is Docker Hub's library/alpine, and a host prefix
    (`ghcr.io/owner/tool`) picks that upstream, unless `upstream=` names one."""
    name = request.match_info["repository"]
    router = request.app[MIRROR].router
    chosen = _upstream_filter(request)
    target = router.route(name, chosen)
    detail = await request.app[MIRROR].stores.catalog.repository(target.upstream.name, target.repo)
    if detail is None:
        raise NameUnknown(f"repository {target.repo} is not cached from {target.upstream.name}")
    return detail.as_dict()


def add_routes(app: web.Application) -> None:
    app.router.add_get("/admin/catalog", guarded(catalog))
    app.router.add_get("/admin/catalog/{repository:.+}", guarded(repository))
