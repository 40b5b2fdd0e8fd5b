"""Tag lists on a shared bucket while the upstream is down: the tags any replica recorded are
listed, and a storm of clients asking at once costs one LIST of the bucket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.ops import metric_value, scrape
from prometheus_client.parser import text_string_to_metric_families
from support.poll import eventually

from .replicas import get, records_of, replica

REPO = "library/listed"
CLIENTS = 40


async def upstream_errors(session: aiohttp.ClientSession, mirror: TestServer) -> float:
    """Every upstream failure the replica counted, whatever its reason."""
    text = await scrape(session, mirror)
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mirror_upstream_errors_total"
    )


async def lists(session: aiohttp.ClientSession, mirror: TestServer) -> float:
    text = await scrape(session, mirror)
    labels = {"operation": "ListObjectsV2", "status": "2xx"}
    return metric_value(text, "mirror_bucket_requests_total", labels) or 0.0


async def test_a_storm_of_tag_lists_lists_the_bucket_once(
    hub: FakeHub,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """40 clients of a new replica ask a tag list the upstream cannot give: one LIST of the
    repository's tag records answers them all."""
    for tag in ("v1", "v2"):
        hub.add_image(REPO, tag, [tag.encode()])
    first = await replica(make_mirror, tmp_path, "first")
    for tag in ("v1", "v2"):
        assert (await get(session, first, f"/v2/{REPO}/manifests/{tag}"))[0] == 200
    second = await replica(make_mirror, tmp_path, "second")  # knows no tag: asks the bucket
    hub.faults.registry_status = 503

    # The LIST is held until every client's upstream request has failed: from then on each
    # client is listing the bucket, or waiting for a listing another one started.
    client = records_of(second)._blobs.client
    real, gate = client.list_objects_v2, asyncio.Event()

    async def held(**kwargs: Any) -> Any:
        await gate.wait()
        return await real(**kwargs)

    monkeypatch.setattr(client, "list_objects_v2", held)
    failed, listed = await upstream_errors(session, second), await lists(session, second)
    asking = [
        asyncio.create_task(get(session, second, f"/v2/{REPO}/tags/list")) for _ in range(CLIENTS)
    ]

    async def all_failed() -> bool:
        return await upstream_errors(session, second) - failed >= CLIENTS

    await eventually(all_failed, what=f"{CLIENTS} upstream failures")
    gate.set()
    answers = await asyncio.gather(*asking)
    assert {(status, json.loads(body)["tags"] == ["v1", "v2"]) for status, body, _ in answers} == {
        (200, True)
    }
    count = await lists(session, second) - listed
    assert count == 1, f"{count} LISTs of the bucket for {CLIENTS} clients of one tag list"
