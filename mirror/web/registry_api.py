"""Thin /v2/ handlers: parse the request, call a service, write the registry's headers."""

from __future__ import annotations

import logging
import re
from contextlib import closing

from aiohttp import web

from mirror.errors import (
    ManifestUnknown,
    NotFound,
    PaginationInvalid,
    TagInvalid,
    Unavailable,
    Unsupported,
)
from mirror.reference import Digest, Reference, parse_reference
from mirror.services.blobs import StoredBlob
from mirror.services.fill import BlobStream
from mirror.stores.blob_backend import BlobGone
from mirror.upstream.router import Target
from mirror.web.appkeys import CACHE_RESULT, GATE, MIRROR
from mirror.web.blob_responses import redirect_to_bucket, send_bucket, send_stored, send_stream
from mirror.web.middleware import API_VERSION

log = logging.getLogger(__name__)

# Says where an answer came from: "hit" (local), "miss" (fetched now) or "stale" (the upstream
# failed and the cache answered; a Warning header says so too).
CACHE_HEADER = "X-Cache"
STALE_WARNING = '299 - "stale: the upstream could not be reached; served from cache"'
# The most tags one page may ask for: a larger `n` is clamped to it (the answer then carries a
# Link to the next page, as for any page the server shortens).
MAX_PAGE_SIZE = 10_000
_PAGE_SIZE = re.compile(r"[0-9]+")
# A bucket hit whose object another replica just removed is asked again (then a miss); twice
# in a row means the bucket and the index keep disagreeing.
BUCKET_ATTEMPTS = 3


def _read_only(request: web.Request) -> None:
    if request.method not in ("GET", "HEAD"):
        raise Unsupported("this registry is a read-only mirror: push and delete are unsupported")


async def api_root(request: web.Request) -> web.Response:
    _read_only(request)
    return web.json_response({}, headers=dict([API_VERSION]))


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Route /v2/<name>/{manifests,blobs,tags} by hand: names hold any number of slashes."""
    _read_only(request)
    path = request.match_info["tail"]
    if path.endswith("/tags/list"):
        return await tags_list(request, _target(request, path.removesuffix("/tags/list")))
    for kind, handler in (("manifests", manifest), ("blobs", blob)):
        name, sep, ref = path.rpartition(f"/{kind}/")
        if sep and name and ref and "/" not in ref:
            return await handler(request, _target(request, name), ref)
    raise NotFound(f"no such endpoint: /v2/{path[:200]}")


def _target(request: web.Request, name: str) -> Target:
    return request.app[MIRROR].router.route(name, request.query.get("ns"))


def _headers(target: Target) -> dict[str, str]:
    headers = dict([API_VERSION])
    if target.namespace is not None:
        headers["OCI-Namespace"] = target.namespace
    return headers


def client_accept(request: web.Request) -> tuple[str, ...]:
    """Every media type of every Accept line (dockerd sends one line per type)."""
    types = []
    for line in request.headers.getall("Accept", []):
        for item in line.split(","):
            media_type = item.split(";", 1)[0].strip().lower()
            if media_type:
                types.append(media_type)
    return tuple(types)


def manifest_reference(text: str) -> Reference:
    """A reference that is not a valid tag names no manifest: 404 MANIFEST_UNKNOWN, as
    distribution answers (the conformance suite's pull workflow expects it). A malformed
    digest stays 400 DIGEST_INVALID."""
    try:
        return parse_reference(text)
    except TagInvalid:
        raise ManifestUnknown(f"manifest unknown: {text[:200]!r} is not a valid tag") from None


async def manifest(request: web.Request, target: Target, ref_text: str) -> web.Response:
    ref = manifest_reference(ref_text)
    result = await request.app[MIRROR].manifests.get(
        target.upstream, target.repo, ref, client_accept(request)
    )
    request[CACHE_RESULT] = result.source
    stored = result.manifest
    headers = _headers(target)
    headers[CACHE_HEADER] = result.source
    headers["Docker-Content-Digest"] = str(stored.digest)
    headers["ETag"] = f'"{stored.digest}"'
    if result.stale:
        headers["Warning"] = STALE_WARNING
    # HEAD gets the same headers, Content-Length included; aiohttp leaves out the body.
    response = web.Response(body=stored.body, headers=headers)
    response.content_type = stored.media_type
    return response


async def blob(request: web.Request, target: Target, digest_text: str) -> web.StreamResponse:
    digest = Digest.parse(digest_text)
    service = request.app[MIRROR].blobs
    headers = _headers(target)
    headers["Docker-Content-Digest"] = str(digest)
    headers["Content-Type"] = "application/octet-stream"
    if request.method == "HEAD":
        size = await service.stat(target.upstream, target.repo, digest)
        headers["Accept-Ranges"] = "bytes"
        head = web.StreamResponse(headers=headers)
        if size is not None:
            head.content_length = size
        await head.prepare(request)
        await head.write_eof()
        return head
    client = request.app[GATE].client_address(request)
    for _ in range(BUCKET_ATTEMPTS):
        source = await service.open(
            target.upstream, target.repo, digest, None if client is None else str(client)
        )
        streaming = isinstance(source, BlobStream)
        request[CACHE_RESULT] = headers[CACHE_HEADER] = "miss" if streaming else "hit"
        # The blob counts as in use until the last byte went out, so no purge unlinks it sooner.
        with service.reading(digest):
            if isinstance(source, BlobStream):
                with closing(source):
                    return await send_stream(request, source, headers)
            if isinstance(source, StoredBlob):
                return await send_stored(request, source.path, source.size, headers)
            try:
                if source.redirect:
                    return await redirect_to_bucket(service, source, headers)
                return await send_bucket(request, service, source, headers)
            except BlobGone:
                continue  # another replica removed it; its row is gone too: now a miss
    raise Unavailable(f"blob {digest} keeps vanishing from the bucket; try again")


def page_size(text: str | None) -> int | None:
    """`n`: ASCII digits only (str.isdigit() also takes '²', which int() refuses), at most
    MAX_PAGE_SIZE (a longer number is clamped without int(), which refuses 4,300+ digits)."""
    if text is None:
        return None
    if not _PAGE_SIZE.fullmatch(text):
        raise PaginationInvalid(
            f"n must be a non-negative integer, got {text[:20]!r}", detail={"n": text[:20]}
        )
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_PAGE_SIZE)):
        return MAX_PAGE_SIZE
    return min(int(digits), MAX_PAGE_SIZE)


async def tags_list(request: web.Request, target: Target) -> web.Response:
    n, last = page_size(request.query.get("n")), request.query.get("last")
    page = await request.app[MIRROR].tag_lists.list(target.upstream, target.repo, n, last)
    headers = _headers(target)
    if page.link:
        headers["Link"] = page.link
    if page.stale:
        headers["Warning"] = STALE_WARNING
    return web.Response(body=page.body, headers=headers, content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_route("*", "/v2/", api_root)
    # [\s\S], not `.`: a name with an encoded newline (%0a) is a NAME_INVALID, not a missed route.
    app.router.add_route("*", r"/v2/{tail:[\s\S]+}", dispatch)
