"""The redirect's check of an object (stores/s3_checks.py) and its presigned URLs
(stores/s3_presign.py): a check is never answered by a HEAD sent before it began; a URL is
reused only while more than half its lifetime remains; against a real bucket, every 307 asks
the bucket once, and the request it sends is counted as a HeadObject."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import MakeMirror
from fakes.ops import metric_value, scrape
from support.poll import eventually
from support.seaweedfs import SeaweedFS

from mirror.reference import Digest
from mirror.stores.s3_checks import ObjectChecks
from mirror.stores.s3_presign import Operation, PresignedUrls
from mirror.web.appkeys import MIRROR

DIGEST = Digest.parse("sha256:" + "ab" * 32)
REPO = "library/checks"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_check_is_answered_only_by_a_head_sent_after_it_began() -> None:
    """Checks arriving while a HEAD is in flight share the next one, not that one: the object
    may have been deleted between the first HEAD's send and their arrival."""
    answers: list[asyncio.Future[int | None]] = []

    async def head(digest: Digest) -> int | None:  # the bucket, one HEAD at a time
        answer: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        answers.append(answer)
        return await answer

    async def sign(operation: Operation, key: str, seconds: int) -> str:
        return f"http://bucket/{key}?{operation}"

    urls = PresignedUrls(sign, 300.0, Clock())
    timeout = aiohttp.ClientTimeout(total=5)
    checks = ObjectChecks(urls, lambda d: d.hex, head, None, timeout)  # not started: no session
    first = asyncio.create_task(checks.size(DIGEST))
    await eventually(lambda: len(answers) == 1, what="the first HEAD was sent")
    later = [asyncio.create_task(checks.size(DIGEST)) for _ in range(3)]
    await asyncio.sleep(0)  # one step: each later check has begun (and waits)
    assert len(answers) == 1, "a check that arrived during a HEAD sent one of its own"
    answers[0].set_result(123)  # the object was there when the first HEAD was answered...
    assert await first == 123
    await eventually(lambda: len(answers) == 2, what="the next HEAD was sent")
    answers[1].set_result(None)  # ...and gone by the HEAD the later checks waited for
    assert [await task for task in later] == [None, None, None]
    assert len(answers) == 2, "the later checks shared one HEAD"
    await checks.close()


async def test_a_presigned_url_is_reused_for_half_its_lifetime() -> None:
    signed: list[float] = []
    clock = Clock()

    async def sign(operation: Operation, key: str, seconds: int) -> str:
        assert seconds == 300
        signed.append(clock.now)
        return f"http://bucket/{key}?{operation}&signed={clock.now}"

    urls = PresignedUrls(sign, 300.0, clock)
    first = await urls.url("get_object", "k")
    clock.now += 149.9
    assert await urls.url("get_object", "k") == first
    assert await urls.url("head_object", "k") != first  # each operation its own URL
    clock.now += 0.1  # half the lifetime is gone: signed again
    assert await urls.url("get_object", "k") != first
    clock.now -= 10  # a clock that went back says nothing about a URL's age
    await urls.url("get_object", "k")
    assert len(signed) == 4


@pytest.fixture
def bucket(seaweedfs: SeaweedFS, mirror_config: dict[str, Any]) -> str:
    name = f"checks-{uuid.uuid4().hex[:12]}"
    seaweedfs.create_bucket(name)
    mirror_config["storage"]["backend"] = "s3"
    mirror_config["storage"]["s3"] = {
        "endpoint": seaweedfs.endpoint,
        "bucket": name,
        "access_key": seaweedfs.access_key,
        "secret_key": seaweedfs.secret_key,
        "redirect": True,
    }
    return name


async def test_every_redirect_asks_the_bucket_and_is_counted(
    hub: FakeHub,
    seaweedfs: SeaweedFS,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
) -> None:
    data = FakeHub.make_blob(1024 * 1024, seed=9)
    digest = hub.add_blob(REPO, data)
    mirror = await make_mirror()
    url = mirror.make_url(f"/v2/{REPO}/blobs/{digest}")
    async with session.get(url) as resp:
        assert await resp.read() == data
    await mirror.app[MIRROR].blobs.uploads_settled()

    async def heads(status: str) -> float:
        labels = {"operation": "HeadObject", "status": status}
        text = await scrape(session, mirror)
        return metric_value(text, "mirror_bucket_requests_total", labels) or 0.0

    before, missing = await heads("2xx"), await heads("4xx")
    locations = set()
    for _ in range(3):
        async with session.get(url, allow_redirects=False) as resp:
            assert resp.status == 307
            locations.add(resp.headers["Location"])
    assert await heads("2xx") == before + 3, "a 307 without asking the bucket"
    assert len(locations) == 1, "the presigned URL was signed again within its half-life"
    async with session.get(locations.pop()) as resp:
        assert await resp.read() == data
    # Deleted by another replica: the check's 404 is counted too, and the request is a miss.
    await asyncio.to_thread(
        seaweedfs.client().delete_object, Bucket=bucket, Key=f"blobs/sha256/{digest[7:]}"
    )
    async with session.get(url, allow_redirects=False) as resp:
        assert (resp.status, resp.headers["X-Cache"]) == (200, "miss")
        assert await resp.read() == data
    assert await heads("4xx") > missing
