"""A fresh mirror's /metrics already has every series the dashboard and the alerts read.

Before its first event a labelled metric has no sample, so a dashboard panel says "No data", the
`$upstream` variable (label_values of mirror_upstream_requests_total) stays empty on an offline
mirror, and an alert on `rate(...)` has nothing to evaluate. Every family in deploy/metrics.txt
must have a sample on the first scrape, and every series the dashboard's and the alert rules'
expressions select by a fixed label value must exist at 0 (the rate limits, unknown until an
upstream answer says, are NaN rather than a "0 pulls left" that would be false).
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web import Application
from fakes.clock import FakeClock
from fakes.ops import scrape
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from test_deploy import HISTOGRAM_SUFFIXES, alert_rules, dashboard, dashboard_exprs, known_metrics

from mirror.config import parse_config
from mirror.web.app import create_app

# Samples of `name` (as an expression writes it: histograms with their suffix) by labels.
SELECTOR = re.compile(r"\b(mirror_[a-z_]+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
UNKNOWN_UNTIL_ANSWERED = {"mirror_upstream_ratelimit_remaining", "mirror_upstream_ratelimit_limit"}
NOWHERE = "http://127.0.0.1:9"  # never dialled: nothing is contacted at start

CONFIGS: dict[str, list[dict[str, Any]]] = {
    "one offline upstream": [
        {"name": "docker.io", "url": "https://registry-1.docker.io", "offline": True}
    ],
    "two upstreams": [
        {"name": "docker.io", "url": NOWHERE},
        {"name": "ghcr.io", "url": NOWHERE, "offline": True},
    ],
}

Serve = Callable[[Application], Awaitable[TestServer]]


def all_selectors() -> list[tuple[str, str, dict[str, str]]]:
    """(where, metric, fixed label values) for every mirror_* the dashboard and alerts query.
    Matchers on a Grafana variable, a regex or a negation select no one value: left out."""
    sources = [("dashboard", expr) for expr in dashboard_exprs()]
    sources += [(f"alert {rule['alert']}", str(rule["expr"])) for rule in alert_rules()]
    found = []
    for where, expr in sources:
        for name, matchers in SELECTOR.findall(expr):
            fixed = {
                label: value
                for label, op, value in MATCHER.findall(matchers)
                if op == "=" and "$" not in value
            }
            found.append((where, name, fixed))
    return found


def samples(text: str) -> list[Sample]:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("mirror_") and not sample.name.endswith("_created")
    ]


def family_of(sample_name: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if sample_name.removesuffix(suffix) in known_metrics():
            return sample_name.removesuffix(suffix)
    return sample_name


@pytest.fixture(params=sorted(CONFIGS))
async def fresh(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    aiohttp_server: Serve,
    session: aiohttp.ClientSession,
) -> tuple[list[str], str]:
    """Configured upstream names, and the first scrape of a mirror nobody has used."""
    upstreams = CONFIGS[request.param]
    config = parse_config(
        {
            "server": {"listen": "127.0.0.1:0"},
            "storage": {"path": str(tmp_path / "data")},
            "upstreams": upstreams,
        }
    )
    server = await aiohttp_server(create_app(config, clock=FakeClock()))
    return [upstream["name"] for upstream in upstreams], await scrape(session, server)


def test_the_dashboard_and_alerts_select_fixed_values() -> None:
    """The check below is not empty: these are the selections it has to find."""
    fixed = {(name, tuple(sorted(labels.items()))) for _, name, labels in all_selectors()}
    assert ("mirror_cache_requests_total", (("result", "hit"),)) in fixed
    assert ("mirror_served_bytes_total", (("source", "cache"),)) in fixed
    assert ("mirror_upstream_ratelimit_remaining", (("upstream", "docker.io"),)) in fixed
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert "label_values(mirror_upstream_requests_total, upstream)" in str(
        variables["upstream"]["query"]
    )


async def test_every_listed_family_has_a_sample_on_the_first_scrape(
    fresh: tuple[list[str], str],
) -> None:
    _, text = fresh
    have = {family_of(sample.name) for sample in samples(text)}
    missing = [name for name in known_metrics() if name not in have]
    assert not missing, f"no sample before the first event: {missing}"


async def test_every_series_the_dashboard_and_alerts_select_exists_at_zero(
    fresh: tuple[list[str], str],
) -> None:
    upstreams, text = fresh
    assert "docker.io" in upstreams  # the dashboard's Docker Hub panel has its series
    found = samples(text)
    for where, name, labels in all_selectors():
        if "upstream" in labels and labels["upstream"] not in upstreams:
            continue  # a panel for an upstream this mirror does not have
        matching = [
            sample
            for sample in found
            if sample.name == name and labels.items() <= sample.labels.items()
        ]
        assert matching, f"{where}: no sample of {name}{labels}"
        for sample in matching:
            if name in UNKNOWN_UNTIL_ANSWERED:
                assert math.isnan(sample.value), sample
            else:
                assert sample.value == 0, sample


async def test_every_upstream_has_its_series_from_the_start(
    fresh: tuple[list[str], str],
) -> None:
    """`$upstream` lists every configured upstream, and each per-upstream family has a series
    for each of them (the same bounded set: no repository, tag or digest in any label)."""
    upstreams, text = fresh
    found = samples(text)
    requests = {s.labels["upstream"] for s in found if s.name == "mirror_upstream_requests_total"}
    assert requests == set(upstreams)
    per_upstream: dict[str, dict[str, int]] = {}
    for sample in found:
        if "upstream" in sample.labels:
            counts = per_upstream.setdefault(family_of(sample.name), {})
            counts[sample.labels["upstream"]] = counts.get(sample.labels["upstream"], 0) + 1
    assert {
        "mirror_upstream_requests_total",
        "mirror_upstream_request_duration_seconds",
        "mirror_upstream_bytes_total",
        "mirror_upstream_errors_total",
        "mirror_upstream_ratelimit_remaining",
        "mirror_upstream_ratelimit_limit",
        "mirror_upstream_cooldown",
    } <= per_upstream.keys()
    for family, counts in per_upstream.items():
        assert counts.keys() == set(upstreams), family
        assert len(set(counts.values())) == 1, f"{family}: upstreams differ: {counts}"
    for sample in found:
        for value in sample.labels.values():
            assert "/" not in value and "sha256:" not in value, sample


async def test_a_fresh_mirror_reports_nothing_happened(fresh: tuple[list[str], str]) -> None:
    """Pre-created series are zeros, not invented events (and unknown rate limits are NaN)."""
    _, text = fresh
    for sample in samples(text):
        if family_of(sample.name) in UNKNOWN_UNTIL_ANSWERED:
            assert math.isnan(sample.value), sample
        else:
            assert sample.value == 0, sample
