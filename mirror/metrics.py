"""Prometheus metrics: one registry per app; labels bounded (never a repository or digest)."""

from __future__ import annotations

import math
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from mirror.bucket_metrics import BucketMetrics

# What a cache lookup did: answered locally, asked the upstream, or served old content because
# the upstream could not answer.
CacheResult = Literal["hit", "miss", "stale"]
LookupKind = Literal["manifest", "blob", "tag"]
FillFailure = Literal["truncated", "mismatch", "upstream", "disk", "cancelled", "other"]
FILL_REFUSALS = ("busy", "client", "unreferenced")
FILL_FAILURE_REASONS: tuple[FillFailure, ...] = (
    "truncated",
    "mismatch",
    "upstream",
    "disk",
    "cancelled",
    "other",
)
# The bounded values of every other label, each series created at zero when the app (or, for
# the per-upstream ones, each upstream) is built: a fresh mirror has a sample in every family,
# so dashboards and alerts see 0 rather than nothing. A value the code can produce but that is
# missing here still works, it only appears at its first event (tests/unit/test_metrics.py
# checks these lists against the code).
HTTP_ROUTES = ("base", "manifest", "blob", "tags", "admin", "metrics", "healthz", "readyz", "other")
# Lookups the services make: only a tag has a stale answer (a digest is local or fetched).
CACHE_LOOKUPS: tuple[tuple[LookupKind, CacheResult], ...] = (
    ("manifest", "hit"),
    ("manifest", "miss"),
    ("blob", "hit"),
    ("blob", "miss"),
    ("tag", "hit"),
    ("tag", "miss"),
    ("tag", "stale"),
)
SERVED_SOURCES = ("cache", "fill")  # a stored blob, or a fill still downloading
UPSTREAM_KINDS = ("manifest", "blob", "tag", "token")  # token requests are counted, not timed
TIMED_UPSTREAM_KINDS = ("manifest", "blob", "tag")
UPSTREAM_ERROR_REASONS = (
    "connect",
    "timeout",
    "read",
    "status",
    "ratelimited",
    "redirects",
    "invalid",
    "auth",
    "denied",
    "offline",
    "cooldown",
)
# What removed content, and what it removed: retention by age, eviction by size (blobs only),
# an operator's purge.
RemovalReason = Literal["age", "size", "purge"]
REMOVAL_REASONS: tuple[RemovalReason, ...] = ("age", "size", "purge")
REMOVALS: tuple[tuple[RemovalReason, str], ...] = (
    ("age", "tag"),
    ("age", "manifest"),
    ("age", "blob"),
    ("size", "blob"),
    ("purge", "tag"),
    ("purge", "manifest"),
    ("purge", "blob"),
)
_LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """Every metric the mirror exports; services and handlers update these objects."""

    def __init__(self) -> None:
        # A registry of our own, so several apps in one process (tests) do not collide.
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        r = self.registry
        self.http_requests = Counter(
            "mirror_http_requests_total",
            "HTTP requests answered, by route, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.bucket = BucketMetrics(r)  # the S3 backend's requests (stores/s3_blobs.py)
        self.http_duration = Histogram(
            "mirror_http_request_duration_seconds",
            "Time to answer a request (for blobs, until the last byte was handed to the socket).",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_requests = Counter(
            "mirror_cache_requests_total",
            "Cache lookups by kind (manifest, blob, tag) and result (hit, miss, stale).",
            ["kind", "result"],
            registry=r,
        )
        self.served_bytes = Counter(
            "mirror_served_bytes_total",
            "Bytes of blobs sent to clients, from a stored blob (cache) or a running fill.",
            ["source"],
            registry=r,
        )
        self.upstream_requests = Counter(
            "mirror_upstream_requests_total",
            "Requests sent upstream, by kind (manifest, blob, tag, token) and status.",
            ["upstream", "kind", "status"],
            registry=r,
        )
        self.upstream_duration = Histogram(
            "mirror_upstream_request_duration_seconds",
            "Time until the upstream's response headers arrived.",
            ["upstream", "kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.upstream_bytes = Counter(
            "mirror_upstream_bytes_total",
            "Blob bytes received from the upstream.",
            ["upstream"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "mirror_upstream_errors_total",
            "Upstream failures by reason (connect, timeout, status, ratelimited, auth, ...).",
            ["upstream", "reason"],
            registry=r,
        )
        self.ratelimit_remaining = Gauge(
            "mirror_upstream_ratelimit_remaining",
            "Pulls left in the upstream's rate-limit window (Docker Hub's ratelimit-remaining).",
            ["upstream"],
            registry=r,
        )
        self.ratelimit_limit = Gauge(
            "mirror_upstream_ratelimit_limit",
            "The upstream's rate limit (Docker Hub's ratelimit-limit).",
            ["upstream"],
            registry=r,
        )
        self.cooldown = Gauge(
            "mirror_upstream_cooldown",
            "1 while a 429 cool-down holds and the upstream is not asked.",
            ["upstream"],
            registry=r,
        )
        self.fills_inflight = Gauge(
            "mirror_fills_inflight", "Blob downloads running now.", registry=r
        )
        self.coalesced = Counter(
            "mirror_coalesced_requests_total",
            "Blob requests that joined a download already running.",
            registry=r,
        )
        self.digest_mismatches = Counter(
            "mirror_digest_mismatches_total",
            "Upstream content whose bytes did not match its digest (discarded).",
            registry=r,
        )
        self.fill_failures = Counter(
            "mirror_fill_failures_total",
            "Blob downloads that ended without a stored blob, by reason (truncated, mismatch, "
            "upstream, disk, cancelled, other).",
            ["reason"],
            registry=r,
        )
        for reason in FILL_FAILURE_REASONS:
            self.fill_failures.labels(reason)  # present at 0 before the first failure
        self.fills_refused = Counter(
            "mirror_fills_refused_total",
            "Blob misses refused instead of downloaded, by reason: busy (cache."
            "max_concurrent_fills), client (cache.max_fills_per_client), unreferenced "
            "(cache.fetch_unreferenced_blobs = false).",
            ["reason"],
            registry=r,
        )
        for refusal in FILL_REFUSALS:
            self.fills_refused.labels(refusal)
        self.clients_cut = Counter(
            "mirror_clients_cut_total",
            "Clients cut short because the download they followed failed (never sent bad bytes).",
            registry=r,
        )
        self.storage_full = Gauge(
            "mirror_storage_full",
            "1 while writes to the data folder fail for lack of space.",
            registry=r,
        )
        self.stale_served = Counter(
            "mirror_stale_served_total",
            "Answers served from cache because the upstream could not answer.",
            registry=r,
        )
        self.storage_bytes = Gauge("mirror_storage_bytes", "Bytes of stored blobs.", registry=r)
        self.storage_blobs = Gauge("mirror_storage_blobs", "Stored blobs.", registry=r)
        self.storage_limit = Gauge(
            "mirror_storage_limit_bytes", "storage.max_size (0: unbounded).", registry=r
        )
        self.storage_shared = Gauge(
            "mirror_storage_shared",
            "1: the blobs live in an S3 bucket replicas share, and storage.max_size bounds the"
            " bucket (mirror_bucket_blob_bytes), not this replica's index; 0: the local folder.",
            registry=r,
        )
        self.evicted_blobs = Counter(
            "mirror_evicted_blobs_total", "Blobs evicted to stay under max_size.", registry=r
        )
        self.evicted_bytes = Counter(
            "mirror_evicted_bytes_total", "Bytes evicted to stay under max_size.", registry=r
        )
        self.removed_total = Counter(
            "mirror_retention_removed_total",
            "Tags, manifests and blobs removed, by reason: age (storage.max_unused_age), size "
            "(eviction under storage.max_size), purge (an operator).",
            ["reason", "kind"],
            registry=r,
        )
        self.removed_bytes = Counter(
            "mirror_retention_removed_bytes_total",
            "Bytes of blobs removed, by reason (age, size, purge).",
            ["reason"],
            registry=r,
        )
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        """The series that do not depend on the upstreams, at 0 before their first event."""
        for route in HTTP_ROUTES:
            self.http_duration.labels(route)
            if route != "other":  # what no route answers (a 404): nothing to show at 200
                self.http_requests.labels(route, "GET", "200")
        for kind, result in CACHE_LOOKUPS:
            self.cache_requests.labels(kind=kind, result=result)
        for source in SERVED_SOURCES:
            self.served_bytes.labels(source)
        for reason, removed in REMOVALS:
            self.removed_total.labels(reason, removed)
        for reason in REMOVAL_REASONS:
            self.removed_bytes.labels(reason)

    def add_upstream(self, name: str) -> None:
        """One upstream's series, before its first request: counters and latencies at 0, the
        rate limit NaN (unknown until the upstream's answer says; 0 would read "none left")."""
        for kind in UPSTREAM_KINDS:
            self.upstream_requests.labels(name, kind, "200")
        for kind in TIMED_UPSTREAM_KINDS:
            self.upstream_duration.labels(name, kind)
        self.upstream_bytes.labels(name)
        for reason in UPSTREAM_ERROR_REASONS:
            self.upstream_errors.labels(name, reason)
        self.ratelimit_limit.labels(name).set(math.nan)
        self.ratelimit_remaining.labels(name).set(math.nan)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def removed(
        self,
        reason: RemovalReason,
        *,
        tags: int = 0,
        manifests: int = 0,
        blobs: int = 0,
        size: int = 0,
    ) -> None:
        """Count what a purge, retention or eviction removed (kinds it cannot remove: untouched)."""
        for kind, count in (("tag", tags), ("manifest", manifests), ("blob", blobs)):
            if count:
                self.removed_total.labels(reason, kind).inc(count)
        self.removed_bytes.labels(reason).inc(size)

    def cache(self, kind: LookupKind, result: CacheResult) -> None:
        self.cache_requests.labels(kind=kind, result=result).inc()
        if result == "stale":
            self.stale_served.inc()
