"""Typed keys: the assembled mirror on the application, and what a request records for its log."""

from __future__ import annotations

from aiohttp import web

from mirror.assembly import Mirror
from mirror.web.gate import PullGate

MIRROR = web.AppKey("mirror", Mirror)
# Who may pull, and who a client is (its address, behind trusted proxies too).
GATE = web.AppKey("gate", PullGate)
# What the cache did for this request ("hit", "miss", "stale"), for the request log.
CACHE_RESULT = web.RequestKey("cache_result", str)
# Body bytes a streamed response really wrote (it may be cut short), for the request log.
BODY_SENT = web.RequestKey("body_sent", int)
# Set for every request that reached the app (aiohttp's parser refuses some before routing).
ROUTED = web.RequestKey("routed", bool)
