"""A real `mirror serve` at the edge: TLS on the pull port and `[server] allow`, seen from two
loopback addresses. The mirror listens on 127.0.0.1; a client bound to 127.0.0.2 (Linux routes
all of 127.0.0.0/8 to `lo`) is a host outside the allowed network."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest
import trustme
from support.images import Image
from support.mirror_process import MirrorProcess, MirrorProcesses
from support.registry import Registry
from support.tls import install, tls_config, trusting

ALLOWED = "127.0.0.1"
ELSEWHERE = "127.0.0.2"


def get(
    mirror: MirrorProcess, path: str, source: str, ca: trustme.CA, accept: str = "*/*"
) -> tuple[int, dict[str, str], bytes]:
    """GET over TLS from the local address `source`."""
    conn = http.client.HTTPSConnection(
        "127.0.0.1", mirror.port, timeout=10, source_address=(source, 0), context=trusting(ca)
    )
    try:
        conn.request("GET", path, headers={"Accept": accept})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.fixture
def allowing_mirror(
    registry: Registry, mirror_processes: MirrorProcesses, tmp_path: Path
) -> tuple[MirrorProcess, trustme.CA]:
    ca = trustme.CA()
    root = tmp_path / "edge"
    install(ca, root / "tls")
    config: dict[str, Any] = tls_config(registry.url, root)
    config["server"]["allow"] = [f"{ALLOWED}/32"]
    return mirror_processes(config=config, client_tls=trusting(ca)), ca


def test_a_client_outside_the_allow_list_gets_403_denied_with_an_oci_body(
    allowing_mirror: tuple[MirrorProcess, trustme.CA], registry: Registry
) -> None:
    mirror, ca = allowing_mirror
    image: Image = registry.images["docker"]
    manifest = f"/v2/{image.repo}/manifests/{image.tag}"
    for path in ("/v2/", manifest):
        status, headers, body = get(mirror, path, ELSEWHERE, ca)
        assert status == 403, (path, status, body)
        assert headers["Content-Type"].startswith("application/json"), headers
        errors = json.loads(body)["errors"]
        assert [error["code"] for error in errors] == ["DENIED"], errors
        assert errors[0]["message"]

    mark = registry.mark()
    status, _, _ = get(mirror, "/v2/", ALLOWED, ca)
    assert status == 200
    status, _, body = get(mirror, manifest, ALLOWED, ca, accept=image.media_type)
    assert status == 200, body
    assert json.loads(body)["schemaVersion"] == 2
    assert registry.requests_since(mark), "the allowed client's pull never reached the upstream"
    # The probes are not pulls: answered whoever asks.
    assert get(mirror, "/healthz", ELSEWHERE, ca)[0] == 200
