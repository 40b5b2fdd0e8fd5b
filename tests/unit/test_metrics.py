"""The label values mirror/metrics.py creates at zero are the ones the code can produce.

A value the code produces but the lists lack would only appear at its first event (the "No data"
this pre-creation is for); a value listed but never produced would be a series that stays 0
forever. The code is read, not run: every string literal passed where a label value goes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirror.metrics import (
    CACHE_LOOKUPS,
    HTTP_ROUTES,
    SERVED_SOURCES,
    TIMED_UPSTREAM_KINDS,
    UPSTREAM_ERROR_REASONS,
    UPSTREAM_KINDS,
)
from mirror.upstream.responses import request_kind
from mirror.web.middleware import route_label

PACKAGE = Path(__file__).resolve().parents[2] / "mirror"


def calls() -> Iterator[ast.Call]:
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call):
                yield node


def callee(call: ast.Call) -> str:
    """`self._metrics.upstream_errors.labels` → "upstream_errors.labels"; `Name(...)` → "Name"."""
    parts: list[str] = []
    func: ast.expr = call.func
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts[:2]))


def literals(node: ast.expr) -> set[str]:
    """The strings an argument can be: a literal, or either branch of `a if c else b`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return literals(node.body) | literals(node.orelse)
    return set()


def produced(name: str, position: int) -> set[str]:
    """Every literal the code passes as argument `position` of calls to `name`."""
    values: set[str] = set()
    for call in calls():
        if callee(call) == name and len(call.args) > position:
            values |= literals(call.args[position])
    return values


def test_the_scan_finds_the_calls() -> None:
    assert produced("UpstreamUnavailable", 1) >= {"offline", "cooldown", "timeout"}
    assert produced("served_bytes.labels", 0) == {"cache", "fill"}


def test_every_upstream_error_reason_is_created_at_zero() -> None:
    reasons = produced("UpstreamUnavailable", 1) | produced("upstream_errors.labels", 1)
    assert reasons == set(UPSTREAM_ERROR_REASONS)


def test_every_cache_lookup_is_created_at_zero() -> None:
    lookups = set()
    for call in calls():
        if callee(call) in ("_metrics.cache", "metrics.cache") and len(call.args) == 2:
            kinds, results = literals(call.args[0]), literals(call.args[1])
            lookups |= {(kind, result) for kind in kinds for result in results}
    assert lookups == set(CACHE_LOOKUPS)


def test_every_served_bytes_source_is_created_at_zero() -> None:
    assert produced("served_bytes.labels", 0) == set(SERVED_SOURCES)


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/v2/", "base"),
        ("/v2/library/alpine/manifests/3.19", "manifest"),
        ("/v2/library/alpine/blobs/sha256:abc", "blob"),
        ("/v2/library/alpine/tags/list", "tags"),
        ("/v2/library/alpine/other", "other"),
        ("/admin/stats", "admin"),
        ("/metrics", "metrics"),
        ("/healthz", "healthz"),
        ("/readyz", "readyz"),
        ("/", "other"),
    ],
)
def test_route_labels_are_the_listed_routes(path: str, route: str) -> None:
    assert route_label(path) == route
    assert route in HTTP_ROUTES


def test_every_listed_route_is_a_route_label() -> None:
    paths = ["/v2/", "/v2/a/manifests/x", "/v2/a/blobs/x", "/v2/a/tags/list", "/x", "/admin/x"]
    paths += ["/metrics", "/healthz", "/readyz"]
    assert {route_label(path) for path in paths} == set(HTTP_ROUTES)


def test_upstream_kinds_are_the_listed_kinds() -> None:
    timed = {
        request_kind(path)
        for path in ("/v2/a/manifests/x", "/v2/a/blobs/sha256:x", "/v2/a/tags/list")
    }
    assert timed == set(TIMED_UPSTREAM_KINDS)
    counted_apart = produced("upstream_requests.labels", 1)  # token requests, counted by hand
    assert timed | counted_apart == set(UPSTREAM_KINDS)
