"""The S3 backend with real parts: mirror processes whose blobs live in a SeaweedFS bucket, in
front of the session's docker-registry, pulled by skopeo.

Every pull is compared file by file with a direct pull from the registry; upstream traffic is
counted from the registry's own log, and the bucket is listed with a plain S3 client.
"""

from __future__ import annotations

import http.client
import json
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.images import Image
from support.mirror_process import MirrorProcess
from support.poll import wait_until
from support.registry import Registry
from support.s3server import S3Server
from support.skopeo import Skopeo

from .conftest import S3_ADMIN_TOKEN, DirectPulls, PullSpec, StartReplica
from .test_skopeo_pull import Puller, blob_gets, listing, pull_specs

NAMES = ["oci", "docker", "index", "list"]


@pytest.fixture
def puller(skopeo: Skopeo, direct: DirectPulls, tmp_path: Path) -> Puller:
    return Puller(skopeo, direct, tmp_path)


def blob_keys(image: Image) -> set[str]:
    """The bucket keys of an image's blobs (its layers and configs)."""
    return {f"blobs/sha256/{digest.split(':', 1)[1]}" for digest in image.blobs}


def uploaded(seaweedfs: S3Server, bucket: str, keys: set[str]) -> dict[str, int]:
    """The bucket's objects once `keys` are among them and no upload runs: a replica uploads a
    blob behind the clients of its fill (services/pending_uploads.py)."""

    def settled() -> dict[str, int] | None:
        stored = seaweedfs.objects(bucket)
        return stored if keys <= set(stored) and not seaweedfs.uploads(bucket) else None

    return wait_until(settled, what="the pulled blobs uploaded")


def local_blob_files(mirror: MirrorProcess) -> list[Path]:
    return [p for p in (mirror.data / "blobs").rglob("*") if p.is_file()]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


def raw_get(mirror: MirrorProcess, path: str, headers: dict[str, str] | None = None) -> Answer:
    """GET without following redirects: the mirror's own answer."""
    conn = http.client.HTTPConnection(mirror.host, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        conn.close()


@pytest.mark.parametrize("redirect", [False, True], ids=["stream", "redirect"])
def test_pulls_cold_and_warm_from_the_bucket(
    redirect: bool,
    images: dict[str, Image],
    registry: Registry,
    seaweedfs: S3Server,
    bucket: str,
    replica: StartReplica,
    puller: Puller,
) -> None:
    mirror = replica(redirect=redirect)
    specs = [spec for name in NAMES for spec in pull_specs(images[name])]
    puller.prepare(specs)

    mark = registry.mark()
    for spec in specs:
        puller.check(mirror, spec, "cold pull")
    cold = registry.requests_since(mark)
    per_blob = Counter(r.reference for r in blob_gets(cold))
    twice = {digest: n for digest, n in per_blob.items() if n > 1}
    assert per_blob and not twice, f"upstream blob GETs: {per_blob}\n{listing(cold)}"
    expected = set().union(*(blob_keys(images[name]) for name in NAMES))
    uploaded(seaweedfs, bucket, expected)  # and no unfinished multipart upload left
    assert not local_blob_files(mirror), "blobs were stored in the local folder"

    mark = registry.mark()
    for spec in specs:
        puller.check(mirror, spec, "warm pull")
    warm = registry.requests_since(mark)
    assert not warm, f"warm pull asked the upstream:\n{listing(warm)}"

    image = images["oci"]
    digest = sorted(image.blobs)[0]
    answer = raw_get(mirror, f"/v2/{image.repo}/blobs/{digest}", {"Range": "bytes=1-4"})
    whole = (puller.direct.get(PullSpec("tag", image.ref)) / digest.split(":", 1)[1]).read_bytes()
    if redirect:
        assert answer.status == 307, f"expected a redirect to the bucket, got {answer.status}"
        location = answer.headers["Location"]
        assert location.startswith(seaweedfs.endpoint + f"/{bucket}/blobs/sha256/"), location
        request = urllib.request.Request(location, headers={"Range": "bytes=1-4"})
        with urllib.request.urlopen(request, timeout=30) as presigned:
            assert (presigned.status, presigned.read()) == (206, whole[1:5])
    else:
        assert (answer.status, answer.body) == (206, whole[1:5])
        assert answer.headers["Content-Range"] == f"bytes 1-4/{len(whole)}"


def test_second_replica_serves_the_bucket_without_upstream_blob_gets(
    images: dict[str, Image],
    registry: Registry,
    seaweedfs: S3Server,
    bucket: str,
    replica: StartReplica,
    puller: Puller,
) -> None:
    """A replica on an empty folder finds what another stored: no upstream blob GET."""
    specs = [spec for name in NAMES for spec in pull_specs(images[name])]
    puller.prepare(specs)
    first = replica()
    for spec in specs:
        puller.check(first, spec, "cold pull through the first replica")
    uploaded(seaweedfs, bucket, set().union(*(blob_keys(images[name]) for name in NAMES)))
    second = replica()
    mark = registry.mark()
    for spec in specs:
        puller.check(second, spec, "pull through a second replica, empty folder")
    seen = registry.requests_since(mark)
    assert not blob_gets(seen), f"the second replica fetched blobs upstream:\n{listing(seen)}"
    assert not local_blob_files(second)


def test_a_new_replica_pulls_every_image_with_the_first_and_the_upstream_stopped(
    images: dict[str, Image], upstream: Registry, replica: StartReplica, puller: Puller
) -> None:
    """The bucket is the truth: tag records, manifests and links are there beside the blobs,
    so a replica that never saw an image (or lost its disk) serves every cached one with the
    upstream unreachable and the replica that fetched it gone."""
    specs = [spec for name in NAMES for spec in pull_specs(images[name])]
    puller.prepare(specs)
    first = replica()
    for spec in specs:
        puller.check(first, spec, "cold pull through the first replica")
    first.stop()
    upstream.stop()
    fresh = replica()
    for spec in specs:
        puller.check(fresh, spec, "pull through a new replica, the upstream stopped")
    assert not local_blob_files(fresh)


@pytest.mark.parametrize("redirect", [False, True], ids=["stream", "redirect"])
def test_purge_through_one_replica_is_a_miss_on_the_other(
    redirect: bool,
    images: dict[str, Image],
    registry: Registry,
    seaweedfs: S3Server,
    bucket: str,
    replica: StartReplica,
    puller: Puller,
) -> None:
    """The object goes from the bucket; the other replica, whose index still names it, fetches
    it again and serves whole bytes, never a broken body (with redirect = true: never a
    redirect to a missing object)."""
    image = images["oci"]
    spec = PullSpec("tag", image.ref)
    puller.prepare([spec])
    first, second = replica(), replica(redirect=redirect)
    puller.check(first, spec, "cold pull through the first replica")
    uploaded(seaweedfs, bucket, blob_keys(image))  # the second replica is to find them there
    puller.check(second, spec, "pull through the second replica (from the bucket)")

    layer = sorted(image.blobs)[0]
    key = f"blobs/sha256/{layer.split(':', 1)[1]}"
    request = urllib.request.Request(
        f"{first.url}/admin/blobs/{layer}",
        method="DELETE",
        headers={"Authorization": f"Bearer {S3_ADMIN_TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        report = json.loads(answer.read())
    assert report["blobs"] == 1, report
    wait_until(lambda: key not in seaweedfs.objects(bucket), what="the object left the bucket")

    mark = registry.mark()
    puller.check(second, spec, "pull through the second replica after the purge")
    seen = registry.requests_since(mark)
    refetched = [r.reference for r in blob_gets(seen)]
    assert refetched == [layer], f"expected one upstream GET of {layer}:\n{listing(seen)}"
    # Completed behind the client (services/pending_uploads.py): soon after, not before.
    wait_until(lambda: key in seaweedfs.objects(bucket), what="the refetched blob stored again")
