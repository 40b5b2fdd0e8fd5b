"""The mirror in front of a registry that wants bearer tokens, as Docker Hub does.

docker-registry runs with `auth: token` (service registry.docker.io); the token server is the
tests' own (tokens.py). skopeo pushes with credentials; clients then pull through the mirror
without any: the mirror gets its own tokens, anonymously or with its configured upstream
username/password.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from clients.checks import assert_mirror_log_clean
from support.images import Image
from support.mirror_process import MirrorProcess
from support.registry import Registry
from support.skopeo import Skopeo

from .conftest import MirrorFactory
from .tokens import SERVICE, Policy, Signer, TokenServer

MIRROR_USER = ("mirror-user", "s3cret: with spaces")
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def fetch(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers={"Accept": ACCEPT})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def pull_all(mirror: MirrorProcess, pushed: dict[str, Image], skopeo: Skopeo, dest: Path) -> None:
    """skopeo copies each image through the mirror (checking every blob's digest) and the
    manifest the mirror serves for the tag is the pushed one, byte for byte."""
    for n, image in enumerate(pushed.values()):
        skopeo.pull(mirror.host, image.ref, dest / f"pull-{n}")
        status, headers, body = fetch(f"{mirror.url}/v2/{image.repo}/manifests/{image.tag}")
        assert status == 200, (status, body)
        assert "sha256:" + hashlib.sha256(body).hexdigest() == image.digest
        assert headers.get("Docker-Content-Digest") == image.digest


def test_anonymous_pull_through_token_auth(
    make_mirror: MirrorFactory,
    token_server: TokenServer,
    pushed: dict[str, Image],
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    token_server.reset(Policy(users={}, anonymous_pull=True))
    mirror = make_mirror(None)
    pull_all(mirror, pushed, skopeo, tmp_path)

    seen = token_server.seen()
    assert seen, "the mirror never asked the token server"
    assert all(r.basic is None and r.other_auth is None for r in seen), seen
    assert all(r.status == 200 and r.service == SERVICE for r in seen), seen
    scopes = {scope for r in seen for scope in r.scopes}
    for image in pushed.values():
        assert f"repository:{image.repo}:pull" in scopes, scopes
    assert_mirror_log_clean(mirror.stderr_path)


def test_pull_with_configured_credentials(
    make_mirror: MirrorFactory,
    token_server: TokenServer,
    pushed: dict[str, Image],
    skopeo: Skopeo,
    tmp_path: Path,
) -> None:
    """The token server wants credentials: the mirror sends its upstream username/password."""
    token_server.reset(Policy(users=dict([MIRROR_USER]), anonymous_pull=False))
    mirror = make_mirror(MIRROR_USER)
    pull_all(mirror, pushed, skopeo, tmp_path)

    seen = token_server.seen()
    assert seen, "the mirror never asked the token server"
    assert all(r.basic == MIRROR_USER for r in seen), f"token requests without the creds: {seen}"
    assert all(r.status == 200 for r in seen), seen
    assert_mirror_log_clean(mirror.stderr_path)


@pytest.mark.parametrize(
    "credentials", [("mirror-user", "wrong"), None], ids=["wrong-password", "no-credentials"]
)
def test_refused_credentials_are_403_denied_not_500(
    credentials: tuple[str, str] | None,
    make_mirror: MirrorFactory,
    token_server: TokenServer,
    pushed: dict[str, Image],
) -> None:
    """The token server refuses the mirror: a client gets 403 DENIED, never a 500 (and not a
    401, which would need a WWW-Authenticate challenge for credentials clients cannot give)."""
    token_server.reset(Policy(users=dict([MIRROR_USER]), anonymous_pull=False))
    mirror = make_mirror(credentials)
    image = pushed["test/oci:v1"]
    urls = [
        ("GET", f"{mirror.url}/v2/{image.repo}/manifests/{image.tag}"),
        ("HEAD", f"{mirror.url}/v2/{image.repo}/manifests/{image.tag}"),
        ("GET", f"{mirror.url}/v2/{image.repo}/manifests/{image.digest}"),
    ]
    for method, url in urls:
        status, _headers, body = fetch(url, method)
        assert status == 403, f"{method} {url}: {status} {body[:300]!r}"
        if method == "GET":
            errors = json.loads(body)["errors"]
            assert errors[0]["code"] == "DENIED", errors
    assert token_server.seen(), "the mirror never asked the token server"
    if credentials is not None:
        assert all(r.basic == credentials for r in token_server.seen())
    assert mirror.running
    assert_mirror_log_clean(mirror.stderr_path)


def test_registry_checks_token_signatures(
    token_registry: Registry, token_server: TokenServer, pushed: dict[str, Image]
) -> None:
    """The upstream really enforces tokens: ours pass, one signed by another key does not."""
    image = pushed["test/oci:v1"]
    url = f"{token_registry.url}/v2/{image.repo}/manifests/{image.tag}"
    access: list[dict[str, object]] = [
        {"type": "repository", "name": image.repo, "actions": ["pull"]}
    ]
    for signer, expected in [(token_server.signer, 200), (Signer(), 401)]:
        req = urllib.request.Request(
            url, headers={"Accept": ACCEPT, "Authorization": f"Bearer {signer.token('t', access)}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        assert status == expected
    assert fetch(url)[0] == 401, "the upstream answered without a token"
