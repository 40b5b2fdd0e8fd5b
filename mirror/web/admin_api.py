"""Admin API (JSON) behind a bearer token: purge, revalidate, stats, gc, verify, jobs."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from mirror.errors import NameUnknown, NotFound, Unauthorized
from mirror.reference import Digest, Tag, parse_repository
from mirror.upkeep.jobs import Progress
from mirror.upstream.client import UpstreamRegistry
from mirror.web import admin_jobs
from mirror.web.appkeys import MIRROR

# A JSON object to answer with 200, or a whole response (a job's 202).
AdminHandler = Callable[[web.Request], Awaitable[dict[str, Any] | web.Response]]


def guarded(handler: AdminHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """No token configured: 404 (the API does not exist). Wrong token: 401. Constant time."""

    async def checked(request: web.Request) -> web.Response:
        token = request.app[MIRROR].config.admin.token
        if token is None:
            raise NotFound("the admin API is disabled: set [admin] token")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # surrogateescape: aiohttp hands undecodable header bytes over as surrogates.
        offered = given.encode("utf-8", "surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(offered, token.encode()):
            raise Unauthorized("a valid admin bearer token is required")
        answer = await handler(request)
        return answer if isinstance(answer, web.Response) else web.json_response(answer)

    return checked


def _upstream(request: web.Request) -> UpstreamRegistry:
    router = request.app[MIRROR].router
    name = request.query.get("upstream")
    if name is None:
        return router.default
    upstream = router.get(name)
    if upstream is None:
        raise NameUnknown(f"no upstream named {name[:100]!r}")
    return upstream


def _dry_run(request: web.Request) -> bool:
    return request.query.get("dry_run", "").lower() in ("1", "true", "yes")


async def purge_repository(request: web.Request) -> dict[str, Any]:
    upstream = _upstream(request)
    repo = parse_repository(request.match_info["repository"], upstream.config.is_docker_hub)
    tag = request.query.get("tag")
    if tag is not None:
        tag = Tag.parse(tag).name
    report = await request.app[MIRROR].upkeep.purge.repository(
        upstream.name, repo, tag, _dry_run(request)
    )
    return report.as_dict()


async def purge_blob(request: web.Request) -> dict[str, Any]:
    digest = Digest.parse(request.match_info["digest"])
    return (await request.app[MIRROR].upkeep.purge.blob(digest, _dry_run(request))).as_dict()


async def purge_manifest(request: web.Request) -> dict[str, Any]:
    digest = Digest.parse(request.match_info["digest"])
    return (await request.app[MIRROR].upkeep.purge.manifest(digest, _dry_run(request))).as_dict()


async def purge_everything(request: web.Request) -> web.Response:
    purge, dry_run = request.app[MIRROR].upkeep.purge, _dry_run(request)

    async def work(progress: Progress) -> dict[str, Any]:
        return (await purge.everything(dry_run)).as_dict()

    return await admin_jobs.run_or_start(request, "purge", work)


async def revalidate(request: web.Request) -> dict[str, Any]:
    upstream = _upstream(request)
    repo = parse_repository(request.match_info["repository"], upstream.config.is_docker_hub)
    tag = Tag.parse(request.query.get("tag", "latest"))
    old, new = await request.app[MIRROR].manifests.revalidate(upstream, repo, tag)
    return {
        "repository": repo,
        "tag": tag.name,
        "old": None if old is None else str(old),
        "new": str(new),
        "changed": old != new,
    }


async def gc(request: web.Request) -> web.Response:
    janitor = request.app[MIRROR].upkeep.janitor

    async def work(progress: Progress) -> dict[str, Any]:
        blobs, freed = await janitor.evict()
        return {"evicted_blobs": blobs, "evicted_bytes": freed}

    return await admin_jobs.run_or_start(request, "gc", work)


async def verify(request: web.Request) -> web.Response:
    janitor = request.app[MIRROR].upkeep.janitor

    async def work(progress: Progress) -> dict[str, Any]:
        report = await janitor.verify(progress)
        return {"checked": report.checked, "corrupt": report.corrupt, "busy": report.skipped_busy}

    return await admin_jobs.run_or_start(request, "verify", work)


async def stats(request: web.Request) -> dict[str, Any]:
    metadata, usage, metrics = (
        request.app[MIRROR].stores.metadata,
        request.app[MIRROR].stores.ledger,
        request.app[MIRROR].metrics,
    )
    sample = metrics.registry.get_sample_value

    def lookups(result: str) -> float:
        return sum(
            sample("mirror_cache_requests_total", {"kind": kind, "result": result}) or 0.0
            for kind in ("manifest", "blob", "tag")
        )

    hits, total = lookups("hit"), lookups("hit") + lookups("miss") + lookups("stale")
    upstreams = []
    for upstream in request.app[MIRROR].router.upstreams:
        upstreams.append(
            {
                "name": upstream.name,
                "url": str(upstream.config.url),
                "offline": upstream.config.offline,
                "tags": await metadata.count("tags", upstream.name),
                "cooling_down": upstream.cooling_down,
                "ratelimit_limit": upstream.rate_limit.limit,
                "ratelimit_remaining": upstream.rate_limit.remaining,
            }
        )
    return {
        "storage": {"bytes": usage.bytes, "blobs": usage.blobs, "limit_bytes": usage.max_size},
        "manifests": await metadata.count("manifests"),
        "tags": await metadata.count("tags"),
        "hit_ratio": hits / total if total else None,
        "upstreams": upstreams,
    }


def add_routes(app: web.Application) -> None:
    app.router.add_delete("/admin/cache", guarded(purge_everything))
    app.router.add_delete("/admin/cache/{repository:.+}", guarded(purge_repository))
    app.router.add_delete("/admin/blobs/{digest}", guarded(purge_blob))
    app.router.add_delete("/admin/manifests/{digest}", guarded(purge_manifest))
    app.router.add_post("/admin/revalidate/{repository:.+}", guarded(revalidate))
    app.router.add_get("/admin/stats", guarded(stats))
    app.router.add_post("/admin/gc", guarded(gc))
    app.router.add_post("/admin/verify", guarded(verify))
    app.router.add_get(admin_jobs.JOBS_PATH, guarded(admin_jobs.jobs))
    app.router.add_get(admin_jobs.JOBS_PATH + "/{id}", guarded(admin_jobs.job))
