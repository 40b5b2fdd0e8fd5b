"""skopeo pulls through a real mirror process in front of a real docker-registry.

Every pull through the mirror is compared file by file with a direct pull from the registry;
upstream traffic is counted from the registry's own log.
"""

from __future__ import annotations

import itertools
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from support.images import Image
from support.mirror_process import MirrorProcess
from support.registry import Registry, Request, count
from support.skopeo import Skopeo, diff_dirs

from .conftest import DirectPulls, MirrorFactory, PullSpec

NAMES = ["oci", "docker", "index", "list"]
SHORT_TTL = 1.0


def pull_specs(push: Image) -> list[PullSpec]:
    """Tag first, then digest; for an index/list every platform, then one (arm64) alone."""
    by_digest = f"{push.repo}@{push.digest}"
    if not push.is_list:
        return [PullSpec("tag", push.ref), PullSpec("digest", by_digest)]
    return [
        PullSpec("tag --all", push.ref, all_platforms=True),
        PullSpec("tag arm64", push.ref, arch="arm64"),
        PullSpec("digest --all", by_digest, all_platforms=True),
    ]


class Puller:
    """Pulls through a mirror into fresh directories and compares with the direct pull."""

    def __init__(self, skopeo: Skopeo, direct: DirectPulls, root: Path) -> None:
        self.skopeo = skopeo
        self.direct = direct
        self.root = root
        self._n = itertools.count()

    def prepare(self, specs: list[PullSpec]) -> None:
        """Make the direct pulls now, so they do not show in the upstream's counts later."""
        for spec in specs:
            self.direct.get(spec)

    def check(self, mirror: MirrorProcess, spec: PullSpec, when: str) -> None:
        expected = self.direct.get(spec)
        dest = self.root / f"via-mirror-{next(self._n)}"
        try:
            self.skopeo.pull(
                mirror.host, spec.ref, dest, all_platforms=spec.all_platforms, arch=spec.arch
            )
        except RuntimeError as exc:
            pytest.fail(f"{when}: pull of {spec.label} {spec.ref} through the mirror failed: {exc}")
        problems = diff_dirs(expected, dest)
        assert not problems, (
            f"{when}: {spec.label} {spec.ref} differs from a direct pull: {problems}"
        )


@pytest.fixture
def puller(skopeo: Skopeo, direct: DirectPulls, tmp_path: Path) -> Puller:
    return Puller(skopeo, direct, tmp_path)


def listing(requests: list[Request]) -> str:
    return "\n".join(f"  {r}" for r in requests) or "  (none)"


def blob_gets(requests: list[Request]) -> list[Request]:
    return [r for r in requests if r.method == "GET" and r.kind == "blob"]


@pytest.mark.parametrize("name", NAMES)
def test_pull_through_mirror(
    name: str, images: dict[str, Image], registry: Registry, mirror: MirrorProcess, puller: Puller
) -> None:
    push = images[name]
    specs = pull_specs(push)
    puller.prepare(specs)

    mark = registry.mark()
    for spec in specs:
        puller.check(mirror, spec, "cold pull")
    cold = registry.requests_since(mark)
    per_blob = Counter(r.reference for r in blob_gets(cold))
    assert per_blob, f"the cold pull fetched no blob from the upstream:\n{listing(cold)}"
    twice = {digest: n for digest, n in per_blob.items() if n > 1}
    assert not twice, f"blobs fetched from the upstream more than once: {twice}\n{listing(cold)}"

    mark = registry.mark()
    access_before = registry.access_count()
    for spec in specs:
        puller.check(mirror, spec, "warm pull")
    warm = registry.requests_since(mark)
    assert not blob_gets(warm), f"warm pull fetched blobs upstream:\n{listing(warm)}"
    assert not warm, f"warm pull within the tag TTL asked the upstream:\n{listing(warm)}"
    assert registry.access_count() == access_before, "the upstream saw unlogged requests"


@pytest.mark.parametrize("name", NAMES)
def test_cold_pull_by_digest(
    name: str, images: dict[str, Image], registry: Registry, mirror: MirrorProcess, puller: Puller
) -> None:
    """A digest the mirror has never seen is fetched, checked and served byte-identically."""
    push = images[name]
    spec = PullSpec("digest", f"{push.repo}@{push.digest}", all_platforms=push.is_list)
    puller.prepare([spec])
    mark = registry.mark()
    puller.check(mirror, spec, "cold pull by digest")
    seen = registry.requests_since(mark)
    tag_requests = [r for r in seen if r.kind == "manifest" and r.reference == push.tag]
    assert not tag_requests, f"a pull by digest resolved the tag upstream:\n{listing(seen)}"


@pytest.mark.parametrize("name", NAMES)
def test_pull_with_upstream_stopped(
    name: str, images: dict[str, Image], upstream: Registry, mirror: MirrorProcess, puller: Puller
) -> None:
    """Everything pulled once still pulls, byte-identical, while the upstream is down."""
    specs = pull_specs(images[name])
    puller.prepare(specs)
    for spec in specs:
        puller.check(mirror, spec, "cold pull")
    upstream.stop()
    for spec in specs:
        puller.check(mirror, spec, "pull with the upstream stopped")
    assert mirror.running, "the mirror exited while the upstream was stopped"


def test_expired_tag_is_revalidated_without_blob_gets(
    images: dict[str, Image], registry: Registry, mirror_factory: MirrorFactory, puller: Puller
) -> None:
    """After the tag TTL only the tag is resolved again upstream (a HEAD), no blob moves."""
    mirror = mirror_factory(tag_ttl=f"{SHORT_TTL}s")
    spec = PullSpec("tag", images["oci"].ref)
    puller.prepare([spec])
    puller.check(mirror, spec, "cold pull")
    time.sleep(SHORT_TTL + 0.5)  # a real subprocess: its clock cannot be injected
    mark = registry.mark()
    puller.check(mirror, spec, "pull after the tag TTL")
    seen = registry.requests_since(mark)
    assert not blob_gets(seen), f"expired tag caused blob GETs upstream:\n{listing(seen)}"
    kinds = count(seen)
    assert kinds[("HEAD", "manifest")] >= 1, f"expired tag was not revalidated:\n{listing(seen)}"
    assert set(kinds) <= {("HEAD", "manifest")}, f"more than tag HEADs upstream:\n{listing(seen)}"


def test_expired_tag_is_served_stale_when_upstream_is_down(
    images: dict[str, Image], upstream: Registry, mirror_factory: MirrorFactory, puller: Puller
) -> None:
    """Stale-if-error: an expired tag is served from its last digest, with a Warning header."""
    mirror = mirror_factory(tag_ttl=f"{SHORT_TTL}s")
    push = images["oci"]
    spec = PullSpec("tag", push.ref)
    puller.prepare([spec])
    puller.check(mirror, spec, "cold pull")
    time.sleep(SHORT_TTL + 0.5)
    upstream.stop()
    puller.check(mirror, spec, "pull of an expired tag with the upstream stopped")

    req = urllib.request.Request(
        f"{mirror.url}/v2/{push.repo}/manifests/{push.tag}",
        method="HEAD",
        headers={"Accept": push.media_type},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Content-Digest"] == push.digest
        warning = resp.headers.get("Warning", "")
    assert "stale" in warning.lower(), f"no stale Warning header, got {warning!r}"


def test_concurrent_cold_pulls_fetch_each_blob_once(
    images: dict[str, Image], registry: Registry, mirror: MirrorProcess, puller: Puller
) -> None:
    """Three clients pulling the same uncached image at once cause one upstream GET per blob."""
    spec = PullSpec("tag", images["oci"].ref)
    puller.prepare([spec])
    mark = registry.mark()
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [
            pool.submit(puller.check, mirror, spec, f"concurrent pull {n}") for n in range(3)
        ]
        for future in futures:
            future.result()
    seen = registry.requests_since(mark)
    per_blob = Counter(r.reference for r in blob_gets(seen))
    assert len(per_blob) == 4, f"expected 4 blobs fetched upstream:\n{listing(seen)}"
    twice = {digest: n for digest, n in per_blob.items() if n > 1}
    assert not twice, f"blobs fetched upstream more than once: {twice}\n{listing(seen)}"


def test_restarted_mirror_serves_its_cache_with_upstream_down(
    images: dict[str, Image], upstream: Registry, mirror: MirrorProcess, puller: Puller
) -> None:
    """The cache outlives the process, and a mirror starts while its upstream is unreachable."""
    specs = [spec for name in NAMES for spec in pull_specs(images[name])]
    puller.prepare(specs)
    for spec in specs:
        puller.check(mirror, spec, "cold pull")
    mirror.stop()
    upstream.stop()
    mirror.start()
    for spec in specs:
        puller.check(mirror, spec, "pull from the restarted mirror, upstream stopped")


def test_mirror_stops_cleanly_on_sigterm(
    images: dict[str, Image], mirror: MirrorProcess, puller: Puller
) -> None:
    """SIGTERM after serving ends the process by itself, exit status 0, well before SIGKILL."""
    spec = PullSpec("tag --all", images["index"].ref, all_platforms=True)
    puller.prepare([spec])
    puller.check(mirror, spec, "pull before SIGTERM")
    started = time.monotonic()
    rc = mirror.stop()
    assert rc == 0, f"mirror exit status {rc} after SIGTERM (-9: it had to be killed)"
    assert time.monotonic() - started < 5.0, "mirror took more than 5 s to stop"
