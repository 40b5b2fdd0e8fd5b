"""Routing by digest with a real nginx: deploy/nginx/mirror-replicas.conf in front of three mirror
processes on one SeaweedFS bucket, the session's docker-registry behind them.

Sixteen clients fetch one cold 50 MB layer at once through nginx. With the shipped
`hash $request_uri consistent;` every request reaches one replica and the registry's log shows
one upstream blob GET; without it (round-robin) each replica may fetch it once, never more.
Every body is checked against the digest.
"""

from __future__ import annotations

import hashlib
import http.client
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.images import Image
from support.mirror_process import MirrorProcess
from support.nginx import SHIPPED, Nginx, render
from support.poll import wait_until
from support.registry import Registry
from support.s3server import S3Server

from .conftest import StartReplica
from .test_skopeo_pull import blob_gets, listing

CLIENTS = 16
REPLICAS = 3
CHUNK = 1024 * 1024

StartNginx = Callable[..., Nginx]


@pytest.fixture
def nginx(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StartNginx]:
    started: list[Nginx] = []

    def start(backends: list[MirrorProcess], *, hashing: bool = True) -> Nginx:
        root = tmp_path / f"nginx-{len(started)}"
        proxy = Nginx(root, [m.host for m in backends], hashing=hashing)
        started.append(proxy)
        proxy.start()
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    size: int
    sha256: str
    head: bytes  # the first bytes of the body (an error's text)


def fetch(host: str, path: str) -> Fetched:
    """GET `path`, hashing the body as it streams."""
    conn = http.client.HTTPConnection(host, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        digest, size, head = hashlib.sha256(), 0, b""
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            head = head or chunk[:300]
        return Fetched(response.status, size, digest.hexdigest(), head)
    finally:
        conn.close()


def blob_sizes(registry: Registry, image: Image) -> dict[str, int]:
    """Each blob's size, from a HEAD straight to the registry."""
    sizes: dict[str, int] = {}
    for digest in image.blobs:
        conn = http.client.HTTPConnection(registry.host, timeout=30)
        try:
            conn.request("HEAD", f"/v2/{image.repo}/blobs/{digest}")
            response = conn.getresponse()
            response.read()
            assert response.status == 200, (digest, response.status)
            sizes[digest] = int(response.getheader("Content-Length") or -1)
        finally:
            conn.close()
    return sizes


def largest_blob(registry: Registry, image: Image) -> tuple[str, int]:
    sizes = blob_sizes(registry, image)
    digest = max(sizes, key=lambda d: sizes[d])
    assert sizes[digest] > 50_000_000, f"expected a 50 MB layer in {image.ref}: {sizes}"
    return digest, sizes[digest]


def storm(host: str, path: str) -> list[Fetched]:
    """CLIENTS concurrent GETs of one path."""
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        return list(pool.map(lambda _: fetch(host, path), range(CLIENTS)))


def assert_whole(answers: list[Fetched], digest: str, size: int) -> None:
    wanted = digest.split(":", 1)[1]
    bad = [a for a in answers if (a.status, a.size, a.sha256) != (200, size, wanted)]
    assert not bad, f"{len(bad)} of {len(answers)} clients got other bytes: {bad[:3]}"


def test_shipped_config_hashes_streams_and_never_caps_bodies() -> None:
    text = SHIPPED.read_text()
    for directive in (
        "hash $request_uri consistent;",
        "proxy_buffering off;",
        "proxy_request_buffering off;",
        "client_max_body_size 0;",
        "proxy_read_timeout 900s;",
        "proxy_set_header Host $http_host;",
        "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ):
        assert directive in text, f"{SHIPPED.name} lacks {directive!r}"
    rendered = render(text, ["127.0.0.1:1", "127.0.0.1:2"], "127.0.0.1:3", hashing=False)
    assert "hash " not in rendered and "server 127.0.0.1:2 " in rendered
    assert "listen 127.0.0.1:3;" in rendered and "10.0.0." not in rendered


def test_hashing_one_upstream_get_for_sixteen_clients_and_a_new_replica_serves_it(
    images: dict[str, Image],
    registry: Registry,
    replica: StartReplica,
    nginx: StartNginx,
) -> None:
    image = images["oci"]
    sizes = blob_sizes(registry, image)
    digest = max(sizes, key=lambda d: sizes[d])
    size = sizes[digest]
    assert size > 50_000_000, f"expected a 50 MB layer in {image.ref}: {sizes}"
    path = f"/v2/{image.repo}/blobs/{digest}"
    replicas = [replica() for _ in range(REPLICAS)]
    proxy = nginx(replicas)

    mark = registry.mark()
    answers = storm(proxy.host, path)
    seen = registry.requests_since(mark)
    assert_whole(answers, digest, size)
    gets = Counter(r.reference for r in blob_gets(seen))
    assert gets == {digest: 1}, f"upstream blob GETs: {gets}\n{listing(seen)}"
    routed = {r.replica for r in proxy.routed() if r.uri == path}
    assert len(routed) == 1, f"hashing sent {path} to several replicas: {routed}"

    # A fourth replica, empty folder, same bucket: every blob of the image by digest from the
    # bucket, no upstream GET (the others are pulled through the cluster first, so the bucket
    # has them all).
    for other in sorted(image.blobs - {digest}):
        assert_whole([fetch(proxy.host, f"/v2/{image.repo}/blobs/{other}")], other, sizes[other])
    fourth = replica()
    mark = registry.mark()
    for blob in sorted(image.blobs):
        assert_whole([fetch(fourth.host, f"/v2/{image.repo}/blobs/{blob}")], blob, sizes[blob])
    seen = registry.requests_since(mark)
    # Not even a HEAD: the bucket's links say which repository holds each blob.
    assert not seen, f"the fourth replica asked the upstream:\n{listing(seen)}"


def test_new_replica_serves_the_bucket_with_the_upstream_stopped(
    images: dict[str, Image],
    upstream: Registry,
    replica: StartReplica,
    seaweedfs: S3Server,
    bucket: str,
) -> None:
    image = images["oci"]
    sizes = blob_sizes(upstream, image)
    first = replica()
    for blob in sorted(image.blobs):
        assert_whole([fetch(first.host, f"/v2/{image.repo}/blobs/{blob}")], blob, sizes[blob])
    # The first replica's uploads complete behind its clients: in the bucket soon after.
    keys = {f"blobs/sha256/{blob.split(':', 1)[1]}" for blob in image.blobs}
    wait_until(lambda: keys <= set(seaweedfs.objects(bucket, "blobs/")), what="blobs uploaded")
    fresh = replica()
    upstream.stop()
    for blob in sorted(image.blobs):
        got = fetch(fresh.host, f"/v2/{image.repo}/blobs/{blob}")
        assert got.status == 200, f"{blob}: {got.status} {got.head!r}"
        assert_whole([got], blob, sizes[blob])


def test_round_robin_fetches_at_most_once_per_replica(
    images: dict[str, Image],
    registry: Registry,
    replica: StartReplica,
    nginx: StartNginx,
) -> None:
    """The docs' claim without hashing: each replica asked for a cold blob before any stored
    it fetches it itself, once (its own single-flight), so at most REPLICAS upstream GETs."""
    image = images["docker"]
    digest, size = largest_blob(registry, image)
    path = f"/v2/{image.repo}/blobs/{digest}"
    replicas = [replica() for _ in range(REPLICAS)]
    proxy = nginx(replicas, hashing=False)

    mark = registry.mark()
    answers = storm(proxy.host, path)
    seen = registry.requests_since(mark)
    assert_whole(answers, digest, size)
    gets = Counter(r.reference for r in blob_gets(seen))
    assert set(gets) == {digest} and 1 <= gets[digest] <= REPLICAS, (
        f"upstream blob GETs: {gets}\n{listing(seen)}"
    )
    routed = Counter(r.replica for r in proxy.routed() if r.uri == path)
    assert len(routed) == REPLICAS, f"round-robin used {routed}"
