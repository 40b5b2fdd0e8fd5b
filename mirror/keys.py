"""Typed application keys shared by the app factory and the handlers."""

from __future__ import annotations

from aiohttp import web

from mirror.blobs import BlobService
from mirror.manifests import ManifestService
from mirror.routing import UpstreamRouter
from mirror.tags import TagListService

ROUTER = web.AppKey("router", UpstreamRouter)
MANIFESTS = web.AppKey("manifests", ManifestService)
BLOBS = web.AppKey("blobs", BlobService)
TAGS = web.AppKey("tags", TagListService)
