"""Typed application keys shared by the app factory and the handlers."""

from __future__ import annotations

from aiohttp import web

from mirror.blobs import BlobService
from mirror.config import Config
from mirror.janitor import Janitor
from mirror.manifests import ManifestService
from mirror.metadata import Metadata
from mirror.metrics import Metrics
from mirror.purge import PurgeService
from mirror.routing import UpstreamRouter
from mirror.tags import TagListService
from mirror.usage import BlobUsage

CONFIG = web.AppKey("config", Config)
ROUTER = web.AppKey("router", UpstreamRouter)
MANIFESTS = web.AppKey("manifests", ManifestService)
BLOBS = web.AppKey("blobs", BlobService)
TAGS = web.AppKey("tags", TagListService)
METRICS = web.AppKey("metrics", Metrics)
METADATA = web.AppKey("metadata", Metadata)
USAGE = web.AppKey("usage", BlobUsage)
JANITOR = web.AppKey("janitor", Janitor)
PURGE = web.AppKey("purge", PurgeService)
# What the cache did for this request ("hit", "miss", "stale"), for the request log.
CACHE_RESULT = web.RequestKey("cache_result", str)
# Body bytes a streamed response really wrote (it may be cut short), for the request log.
BODY_SENT = web.RequestKey("body_sent", int)
