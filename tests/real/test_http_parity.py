"""The mirror answers manifest and blob requests as the real registry behind it does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from support.images import DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Image
from support.mirror_process import MirrorProcess
from support.registry import Registry

ACCEPT_ALL = ", ".join([OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST])
HEADERS = ("Content-Type", "Docker-Content-Digest", "Content-Length")


def fetch(method: str, url: str, accept: str = ACCEPT_ALL) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def picked(headers: dict[str, str]) -> dict[str, str | None]:
    lower = {k.lower(): v for k, v in headers.items()}
    return {h: lower.get(h.lower()) for h in HEADERS}


@pytest.mark.parametrize("name", ["oci", "docker", "index", "list"])
def test_manifest_answers_match_upstream(
    name: str, images: dict[str, Image], registry: Registry, mirror: MirrorProcess
) -> None:
    """GET then HEAD, by tag and by digest: same status, headers that matter, and bytes."""
    push = images[name]
    for ref in (push.tag, push.digest):
        for method in ("GET", "HEAD"):
            path = f"/v2/{push.repo}/manifests/{ref}"
            want = fetch(method, registry.url + path)
            got = fetch(method, mirror.url + path)
            what = f"{method} {path}"
            assert got[0] == want[0] == 200, f"{what}: mirror {got[0]}, registry {want[0]}"
            assert picked(got[1]) == picked(want[1]), what
            assert got[2] == want[2], f"{what}: body differs"


@pytest.mark.parametrize("name", ["oci", "index"])
def test_blob_answers_match_upstream(
    name: str, images: dict[str, Image], registry: Registry, mirror: MirrorProcess
) -> None:
    """Every blob of the image: HEAD and GET through the mirror, before and after it is cached."""
    push = images[name]
    _, _, body = fetch("GET", f"{registry.url}/v2/{push.repo}/manifests/{push.digest}")
    doc = json.loads(body)
    manifests = [doc]
    if push.is_list:
        manifests = [
            json.loads(fetch("GET", f"{registry.url}/v2/{push.repo}/manifests/{m['digest']}")[2])
            for m in doc["manifests"]
        ]
    # The mirror learns which blobs the repository holds from the manifests it has served.
    fetch("GET", f"{mirror.url}/v2/{push.repo}/manifests/{push.tag}")
    for m in doc.get("manifests", []):
        fetch("GET", f"{mirror.url}/v2/{push.repo}/manifests/{m['digest']}")
    for manifest in manifests:
        for desc in [manifest["config"], *manifest["layers"]]:
            path = f"/v2/{push.repo}/blobs/{desc['digest']}"
            want = fetch("GET", registry.url + path)[2]
            for method in ("GET", "HEAD", "GET"):
                status, headers, data = fetch(method, mirror.url + path)
                assert status == 200, f"{method} {path}: {status} {data[:300]!r}"
                lower = {k.lower(): v for k, v in headers.items()}
                assert lower.get("content-length") == str(desc["size"]), f"{method} {path}"
                if method == "GET":
                    assert len(data) == desc["size"], f"{method} {path}: short body"
                    assert data == want, f"{method} {path}: bytes differ"


NARROW_ACCEPT = [
    ("list", DOCKER_MANIFEST),
    ("index", OCI_MANIFEST),
    ("oci", DOCKER_MANIFEST),
    ("docker", OCI_MANIFEST),
    ("list", OCI_INDEX),
    ("index", DOCKER_LIST),
]


def error_codes(body: bytes) -> list[str]:
    try:
        return sorted(e.get("code", "") for e in json.loads(body).get("errors", []))
    except (ValueError, AttributeError):
        return [f"not an OCI error body: {body[:200]!r}"]


@pytest.mark.parametrize("cached", [False, True], ids=["cold", "cached"])
@pytest.mark.parametrize(("name", "accept"), NARROW_ACCEPT)
def test_narrow_accept_answered_like_upstream(
    name: str,
    accept: str,
    cached: bool,
    images: dict[str, Image],
    registry: Registry,
    mirror: MirrorProcess,
) -> None:
    """A client that does not accept the tag's media type gets what the registry would give."""
    push = images[name]
    path = f"/v2/{push.repo}/manifests/{push.tag}"
    if cached:
        assert fetch("GET", mirror.url + path)[0] == 200
    want = fetch("GET", registry.url + path, accept)
    got = fetch("GET", mirror.url + path, accept)
    what = f"GET {path} Accept: {accept}"
    if want[0] == 200:
        assert got[0] == 200, f"{what}: mirror {got[0]} {got[2][:300]!r}, registry 200"
        assert picked(got[1]) == picked(want[1]), what
        assert got[2] == want[2], f"{what}: body differs"
        return
    # The registry refused this Accept set (distribution 2.8 answers 400 MANIFEST_INVALID where
    # it would have to convert to schema1, 404 MANIFEST_UNKNOWN for an unaccepted OCI type).
    # The mirror must refuse too, as a client error: the upstream is not unavailable.
    refused = f"registry {want[0]} {error_codes(want[2])}"
    assert 400 <= got[0] < 500, f"{what}: mirror {got[0]} {got[2][:300]!r}, {refused}"
    if want[0] == 404:
        assert got[0] == 404, f"{what}: mirror {got[0]}, {refused}"
        assert error_codes(got[2]) == error_codes(want[2]), what
