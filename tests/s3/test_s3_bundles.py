"""Bundle imports on a shared bucket: a blob the bucket already holds (this replica stored it,
or another one did) is indexed, not uploaded again; one this replica indexed but another
replica removed from the bucket is uploaded again, so the import's images are whole. A lock
is checked against the bucket's objects, not against files this replica never has."""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestServer
from fakes import FakeHub, FakeImage
from fakes.client import MakeMirror
from fakes.ops import metric_value, scrape
from support.s3server import S3Server

from .conftest import KEY_PREFIX
from .replicas import TOKEN, get, replica

REPO = "myorg/bundled"
KB = 1024
RESOLVED_AT = "2026-01-01T00:00:00Z"


def bundle_of(hub: FakeHub, image: FakeImage) -> bytes:
    """An OCI image layout of one image in a tar, as `mirror export` writes it."""
    index = {
        "schemaVersion": 2,
        "manifests": [
            {
                "mediaType": image.media_type,
                "digest": image.manifest_digest,
                "size": len(image.manifest_bytes),
                "annotations": {
                    "org.opencontainers.image.ref.name": f"docker.io/{image.repo}:{image.tag}",
                    "mirror.resolved-at": RESOLVED_AT,
                },
            }
        ],
    }
    files = {"oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode()}
    files[f"blobs/sha256/{image.manifest_digest.split(':')[1]}"] = image.manifest_bytes
    for digest in (image.config_digest, *image.layer_digests):
        files[f"blobs/sha256/{digest.split(':')[1]}"] = hub.content.blob_bytes[digest]
    files["index.json"] = json.dumps(index).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name, content in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            tar.addfile(member, io.BytesIO(content))
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class Sent:
    """What a replica sent the bucket during an import: PUTs (blobs under a part are one PUT
    each, records one each) and body bytes."""

    puts: float
    bytes: float


async def import_bundle(
    session: aiohttp.ClientSession, mirror: TestServer, bundle: bytes
) -> tuple[dict[str, Any], Sent]:
    """POST the bundle; its report and what the replica sent the bucket meanwhile."""
    before = await sent(session, mirror)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with session.post(mirror.make_url("/admin/import"), data=bundle, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        report = await resp.json()
    after = await sent(session, mirror)
    return report, Sent(after.puts - before.puts, after.bytes - before.bytes)


async def sent(session: aiohttp.ClientSession, mirror: TestServer) -> Sent:
    text = await scrape(session, mirror)
    puts = metric_value(text, "mirror_bucket_requests_total", {"operation": "PutObject"})
    out = metric_value(text, "mirror_bucket_bytes_total", {"direction": "out"})
    return Sent(puts or 0.0, out or 0.0)


async def missing(
    session: aiohttp.ClientSession, mirror: TestServer, image: FakeImage
) -> list[str]:
    """What `POST /admin/verify-lock` finds missing of the image, as a lock pins it."""
    entry = {
        "digest": image.manifest_digest,
        "mediaType": image.media_type,
        "resolvedAt": RESOLVED_AT,
        "platforms": [],
        "manifests": [
            {
                "digest": image.manifest_digest,
                "mediaType": image.media_type,
                "platform": None,
                "size": len(image.manifest_bytes),
            }
        ],
        "size": len(image.manifest_bytes),
    }
    lock = {"lockVersion": 1, "images": {f"docker.io/{image.repo}:{image.tag}": entry}}
    headers = {"Authorization": f"Bearer {TOKEN}"}
    url = mirror.make_url("/admin/verify-lock")
    async with session.post(url, data=json.dumps(lock), headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        answer: list[str] = (await resp.json())["missing"]
    return answer


def image_of(hub: FakeHub) -> FakeImage:
    layers = [hub.make_blob(256 * KB, seed=70 + n) for n in (0, 1)]
    return hub.add_image(REPO, "v1", layers)


async def serves_every_blob(
    session: aiohttp.ClientSession, mirror: TestServer, hub: FakeHub, image: FakeImage
) -> None:
    for digest in (image.config_digest, *image.layer_digests):
        status, body, _ = await get(session, mirror, f"/v2/{REPO}/blobs/{digest}")
        assert (status, body) == (200, hub.content.blob_bytes[digest]), digest


async def test_an_import_uploads_no_blob_the_bucket_holds(
    hub: FakeHub,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """The same bundle imported again through the replica that stored it, then through a new
    replica: what goes up is the records (a manifest, its links, a tag), no blob's bytes."""
    image = image_of(hub)
    bundle = bundle_of(hub, image)
    first = await replica(make_mirror, tmp_path, "first")
    report, stored = await import_bundle(session, first, bundle)
    assert report["blobs_added"] == 3
    assert stored.bytes >= 2 * 256 * KB  # the layers went up
    records_only = stored.puts - 3  # the config and both layers are one PUT each

    report, again = await import_bundle(session, first, bundle)
    assert (report["blobs_added"], report["bytes_added"]) == (0, 0)
    assert again.puts == records_only, f"{again} to import blobs the bucket holds"
    assert again.bytes < 256 * KB

    second = await replica(make_mirror, tmp_path, "second")
    report, elsewhere = await import_bundle(session, second, bundle)
    assert (report["blobs_added"], report["bytes_added"]) == (0, 0)
    assert elsewhere.puts == records_only, f"{elsewhere} to import blobs another replica stored"
    assert elsewhere.bytes < 256 * KB
    assert await missing(session, second, image) == []
    hub.faults.registry_status = 503
    hub.reset_counts()
    await serves_every_blob(session, second, hub, image)
    assert hub.count() == 0


async def test_an_import_restores_a_blob_another_replica_removed(
    hub: FakeHub,
    seaweedfs: S3Server,
    bucket: str,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """This replica's row is no proof: another replica may have purged the object since. The
    import finds it missing, uploads it again, and the image is served with no upstream."""
    image = image_of(hub)
    bundle = bundle_of(hub, image)
    mirror = await replica(make_mirror, tmp_path, "only")
    _, stored = await import_bundle(session, mirror, bundle)
    layer = image.layer_digests[0]
    key = f"{KEY_PREFIX}blobs/sha256/{layer.split(':', 1)[1]}"
    assert await missing(session, mirror, image) == []
    await asyncio.to_thread(seaweedfs.client().delete_object, Bucket=bucket, Key=key)
    assert [layer in line for line in await missing(session, mirror, image)] == [True]
    report, again = await import_bundle(session, mirror, bundle)
    assert (report["blobs_added"], report["bytes_added"]) == (1, 256 * KB)
    assert again.puts == stored.puts - 2  # the records, and the one layer gone
    assert await missing(session, mirror, image) == []
    hub.faults.registry_status = 503
    hub.reset_counts()
    await serves_every_blob(session, mirror, hub, image)
    assert hub.count() == 0
