"""Typed application keys shared by the app factory and the handlers."""

from __future__ import annotations

from aiohttp import web

from mirror.config import Config
from mirror.metrics import Metrics
from mirror.services.blobs import BlobService
from mirror.services.manifests import ManifestService
from mirror.services.tag_lists import TagListService
from mirror.stores.ledger import BlobUsage
from mirror.stores.metadata import Metadata
from mirror.upkeep.janitor import Janitor
from mirror.upkeep.purge import PurgeService
from mirror.upstream.router import UpstreamRouter

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
