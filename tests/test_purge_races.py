"""Purges racing pulls: a shared layer never goes while another image needs it; a pull the
janitor has not flushed yet is not aged out."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import MakeMirror, pull
from fakes.oci import ALL_MANIFEST_TYPES, OCI_INDEX
from fakes.ops import assert_consistent
from support.poll import eventually

TOKEN = "races-purge-token-0123456789abc"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KB = 1000


async def admin(session: aiohttp.ClientSession, mirror: Any, path: str) -> Any:
    async with session.delete(mirror.make_url(path), headers=AUTH) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


@pytest.mark.parametrize("seed", range(4))
async def test_purges_racing_pulls_never_take_what_a_kept_image_needs(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path, seed: int
) -> None:
    rng = random.Random(seed)
    base = hub.make_blob(300 * KB, seed=1)
    mid = hub.make_blob(200 * KB, seed=2)
    kept = hub.add_image("team/kept", "v1", [base, mid, hub.make_blob(100 * KB, seed=3)])
    a = hub.add_image("team/a", "v1", [base, hub.make_blob(150 * KB, seed=4)])
    amd = hub.add_image("team/a", "amd64", [base, mid, hub.make_blob(90 * KB, seed=5)])
    arm = hub.add_image("team/a", "arm64", [mid, hub.make_blob(80 * KB, seed=6)])
    hub.add_index("team/a", "multi", [amd, arm], OCI_INDEX)
    hub.faults.blob_chunk_delay = 0.001
    mirror = await make_mirror(admin_token=TOKEN, storage_path=tmp_path / "data")

    async def pull_a() -> None:
        for _ in range(4):
            try:
                await pull(session, mirror, a)
                url = mirror.make_url("/v2/team/a/manifests/multi")
                async with session.get(url, headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)}) as r:
                    await r.read()
                await pull(session, mirror, amd, repo="team/a")
            except AssertionError:
                pass  # a purge may cut a pull of team/a; only team/kept is judged
            await asyncio.sleep(rng.random() * 0.02)

    async def purge_a() -> None:
        for _ in range(6):
            path = rng.choice(
                [
                    "/admin/cache/team/a",
                    "/admin/cache/team/a?tag=v1",
                    "/admin/cache/team/a?tag=multi",
                    f"/admin/manifests/{a.manifest_digest}",
                    f"/admin/manifests/{amd.manifest_digest}",
                    "/admin/cache/team/a?dry_run=1",
                ]
            )
            await admin(session, mirror, path)
            await asyncio.sleep(rng.random() * 0.03)

    await pull(session, mirror, kept)
    await asyncio.gather(pull_a(), pull_a(), purge_a(), pull(session, mirror, kept))

    # Removed files follow their rows once readers let go: wait for that, not a fixed time.
    def consistent() -> bool:
        try:
            assert_consistent(tmp_path / "data")
        except AssertionError:
            return False
        return True

    await eventually(consistent, what="rows and files agree")
    await hub.stop_registry()  # the upstream is gone: team/kept must come whole from the cache
    await pull(session, mirror, kept)


async def test_a_pull_between_the_flush_and_the_retention_sweep_is_not_aged_out(
    mirror_config: dict[str, Any],
    hub: FakeHub,
    make_mirror: MakeMirror,
    clock: Any,
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    """The janitor flushes pull times, then sweeps: a pull that lands between the two (awaits
    apart) is only in memory, so the sweep reads the tag's old pull time and removes the image
    a client is pulling right now."""
    from fakes.ops import read_store

    from mirror.web.appkeys import MIRROR

    mirror_config["storage"].update(max_unused_age="30d", flush_interval="1h")
    image = hub.add_image("myorg/app", "v1", [hub.make_blob(100 * KB, seed=9)])
    mirror = await make_mirror(storage_path=tmp_path / "data")
    await pull(session, mirror, image)
    upkeep = mirror.app[MIRROR].upkeep
    clock.advance(31 * 86400)
    await upkeep.janitor.flush()
    await pull(session, mirror, image)  # a client pulls now: in the window
    await upkeep.janitor.retain()
    state = read_store(tmp_path / "data")
    assert state.tags == 1 and set(state.rows) >= set(image.layer_digests), state
