"""A real Prometheus scrapes a mirror on a real socket; its query API must show what the pulls
did: one miss then hits, the stored bytes and blobs, and the target up. A real `mirror serve`
with `[admin] listen` is scraped on its admin port (its pull port has no /metrics)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.oci import ALL_MANIFEST_TYPES
from fakes.ops import read_store
from support.mirror_process import MirrorProcesses, process_config
from support.poll import eventually
from support.procs import free_port, need, stop_process, which

JOB = "mirror-ops"
REPO = "library/alpine"
START_TIMEOUT = 30.0
SCRAPED_WITHIN = 30.0  # scrape_interval is 1s; generous for a loaded machine


@dataclass
class Prometheus:
    url: str
    proc: asyncio.subprocess.Process
    log: Path


def prometheus_config(target: str) -> str:
    """Scrape one target every second; nothing else (no rules, no remote write)."""
    return (
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        "    metrics_path: /metrics\n"
        "    static_configs:\n"
        f'      - targets: ["{target}"]\n'
    )


def write_files(root: Path, target: str) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    config = root / "prometheus.yml"
    config.write_text(prometheus_config(target))
    return config, root / "prometheus.log"


async def start_prometheus(
    binary: str, root: Path, target: str, session: aiohttp.ClientSession
) -> Prometheus:
    port = free_port()
    config, log = write_files(root, target)
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={root / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    prometheus = Prometheus(f"http://127.0.0.1:{port}", proc, log)

    async def ready() -> bool | None:
        if proc.returncode is not None:
            raise AssertionError(f"prometheus exited {proc.returncode}:\n{log.read_text()}")
        try:
            async with session.get(f"{prometheus.url}/-/ready") as resp:
                return True if resp.status == 200 else None
        except aiohttp.ClientError:
            return None

    try:
        await eventually(ready, within=START_TIMEOUT, what="prometheus ready")
    except BaseException:
        await stop_process(proc)
        raise
    return prometheus


@pytest.fixture
async def mirror(make_mirror: MakeMirror) -> TestServer:
    return await make_mirror()


@pytest.fixture
async def prometheus(
    mirror: TestServer, session: aiohttp.ClientSession, tmp_path: Path
) -> AsyncIterator[Prometheus]:
    need("prometheus")
    binary = which("prometheus")
    assert binary is not None
    assert mirror.host == "127.0.0.1"
    target = f"127.0.0.1:{mirror.port}"
    running = await start_prometheus(binary, tmp_path / "prometheus", target, session)
    try:
        yield running
    finally:
        await stop_process(running.proc)


async def query(
    session: aiohttp.ClientSession, prometheus: Prometheus, promql: str
) -> float | None:
    """The single value of an instant query, or None while it has no sample."""
    url = f"{prometheus.url}/api/v1/query"
    async with session.get(url, params={"query": promql}) as resp:
        body = await resp.json()
    assert resp.status == 200 and body["status"] == "success", body
    result = body["data"]["result"]
    if not result:
        return None
    assert len(result) == 1, result
    return float(result[0]["value"][1])


async def test_prometheus_scrapes_hits_misses_and_storage(
    hub: FakeHub,
    mirror: TestServer,
    prometheus: Prometheus,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    layer = hub.make_blob(700_001, seed=3)
    image = hub.add_image(REPO, "3.19", [layer])
    accept = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
    blob_url = mirror.make_url(f"/v2/{REPO}/blobs/{image.layer_digests[0]}")
    for _ in range(3):  # one cold pull, then two warm ones
        async with session.get(mirror.make_url(f"/v2/{REPO}/manifests/3.19"), headers=accept) as r:
            assert r.status == 200
        async with session.get(blob_url) as resp:
            assert resp.status == 200
            assert await resp.read() == layer
    assert hub.count(server="cdn", method="GET") == 1
    stored = read_store(tmp_path / "data")
    assert stored.files == {image.layer_digests[0]: len(layer)}

    expected = {
        f'up{{job="{JOB}"}}': 1.0,
        'mirror_cache_requests_total{kind="blob",result="miss"}': 1.0,
        'mirror_cache_requests_total{kind="blob",result="hit"}': 2.0,
        'mirror_cache_requests_total{kind="tag",result="miss"}': 1.0,
        'mirror_cache_requests_total{kind="tag",result="hit"}': 2.0,
        "mirror_storage_bytes": float(len(layer)),
        "mirror_storage_blobs": 1.0,
        'sum(mirror_upstream_bytes_total{upstream="docker.io"})': float(len(layer)),
        'sum(mirror_http_requests_total{route="blob",status="200"})': 3.0,
    }
    seen: dict[str, float | None] = {}

    async def all_scraped() -> bool | None:
        for promql in expected:
            seen[promql] = await query(session, prometheus, promql)
        return True if seen == expected else None

    try:
        await eventually(all_scraped, within=SCRAPED_WITHIN, what="scraped values")
    except AssertionError:
        raise AssertionError(
            f"Prometheus shows {seen}, expected {expected}\n{prometheus.log.read_text()[-3000:]}"
        ) from None
    # Labels stay bounded: no series carries a repository or a digest.
    async with session.get(
        f"{prometheus.url}/api/v1/series", params={"match[]": f'{{job="{JOB}"}}'}
    ) as resp:
        series = (await resp.json())["data"]
    assert series
    for labels in series:
        for value in labels.values():
            assert REPO not in value and "sha256:" not in value, labels


async def test_prometheus_scrapes_the_admin_port_and_the_pull_port_has_no_metrics(
    mirror_processes: MirrorProcesses, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """With `[admin] listen`, /metrics lives on the admin port only: Prometheus scrapes that."""
    need("prometheus")
    binary = which("prometheus")
    assert binary is not None
    admin = f"127.0.0.1:{free_port()}"
    config = process_config("http://127.0.0.1:9", tmp_path / "data")  # nothing is pulled
    config["admin"] = {"listen": admin}
    mirror = mirror_processes(config=config)
    async with session.get(f"{mirror.url}/metrics") as resp:
        assert resp.status == 404
        assert (await resp.json())["errors"][0]["code"]
    async with session.get(f"http://{admin}/metrics") as resp:
        assert resp.status == 200

    running = await start_prometheus(binary, tmp_path / "prometheus", admin, session)
    expected = {
        f'up{{job="{JOB}",instance="{admin}"}}': 1.0,
        f'count({{job="{JOB}",__name__=~"mirror_.+"}}) > bool 0': 1.0,
        f'mirror_storage_blobs{{job="{JOB}"}}': 0.0,
    }
    seen: dict[str, float | None] = {}

    async def scraped() -> bool | None:
        for promql in expected:
            seen[promql] = await query(session, running, promql)
        return True if seen == expected else None

    try:
        await eventually(scraped, within=SCRAPED_WITHIN, what="the admin port scraped")
    except AssertionError:
        raise AssertionError(
            f"Prometheus shows {seen}, expected {expected}\n{running.log.read_text()[-3000:]}"
        ) from None
    finally:
        await stop_process(running.proc)
