"""`mirror stats|purge|gc|verify` through the command line's `main`: on a stopped data folder
(--data) and against a running mirror's admin API (--server, --token)."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from fakes import FakeHub, FakeImage
from fakes.client import MakeMirror, pull
from fakes.oci import sha256_digest
from fakes.ops import Cli, assert_consistent, blob_path, flip_bytes, read_store

TOKEN = "ops-cli-token-0123456789abcdef"
REPO = "library/alpine"


def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def stopped_folder(
    hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession
) -> FakeImage:
    """Pull one image (a config and two layers) through a mirror, then stop that mirror."""
    image = hub.add_image(REPO, "3.19", [hub.make_blob(300_000, seed=n) for n in (1, 2)])
    mirror = await make_mirror()
    await pull(session, mirror, image)
    await mirror.close()
    return image


async def test_verify_on_a_stopped_folder_removes_a_corrupt_blob(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = data_dir(tmp_path)
    image = await stopped_folder(hub, make_mirror, session)
    clean = await cli("verify", "--data", str(data))
    assert clean.returncode == 0, clean
    assert clean.json()["corrupt"] == [] and clean.json()["checked"] == 3

    bad = image.layer_digests[1]
    flip_bytes(blob_path(data, bad), offset=12_345)
    result = await cli("verify", "--data", str(data))
    assert result.returncode == 1, result
    report = result.json()
    assert report["corrupt"] == [bad] and report["checked"] == 3
    assert not blob_path(data, bad).exists()
    state = assert_consistent(data)
    assert bad not in state.rows and len(state.rows) == 2

    again = await cli("verify", "--data", str(data))
    assert again.returncode == 0, again
    assert again.json()["corrupt"] == [] and again.json()["checked"] == 2

    # The next start serves the removed blob again, fetched from upstream.
    hub.reset_counts()
    mirror = await make_mirror()
    await pull(session, mirror, image)
    assert hub.count(server="cdn", method="GET") == 1


async def test_stats_purge_and_gc_on_a_stopped_folder(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = data_dir(tmp_path)
    image = await stopped_folder(hub, make_mirror, session)
    before = assert_consistent(data)

    stats = await cli("stats", "--data", str(data))
    assert stats.returncode == 0, stats
    assert stats.json()["storage"] == {"bytes": before.file_bytes, "blobs": 3}
    assert stats.json()["manifests"] == 1 and stats.json()["tags"] == 1

    dry = await cli("purge", "--all", "--dry-run", "--data", str(data))
    assert dry.returncode == 0, dry
    assert dry.json() == {
        "tags": 1,
        "manifests": 1,
        "blobs": 3,
        "bytes": before.file_bytes,
        "dry_run": True,
    }
    assert read_store(data) == before

    # What a crash leaves: gc on a stopped folder also reconciles rows and files.
    (data / "tmp" / "left.partial").write_bytes(b"x")
    blob_path(data, image.layer_digests[0]).unlink()
    orphan = b"a file no row knows"
    orphan_path = blob_path(data, sha256_digest(orphan))
    orphan_path.parent.mkdir(parents=True, exist_ok=True)
    orphan_path.write_bytes(orphan)
    gc = await cli("gc", "--data", str(data))
    assert gc.returncode == 0, gc
    assert gc.json()["reconciled"] == {
        "temp_files": 1,
        "rows_without_file": 1,
        "files_without_row": 1,
    }
    assert gc.json()["evicted_blobs"] == 0
    assert len(assert_consistent(data).rows) == 2

    purge = await cli("purge", "--repository", "alpine", "--tag", "3.19", "--data", str(data))
    assert purge.returncode == 0, purge
    assert purge.json()["tags"] == 1 and purge.json()["dry_run"] is False
    # The image's only tag: its manifest and the two blobs left after gc go with it.
    assert purge.json()["manifests"] == 1 and purge.json()["blobs"] == 2
    everything = await cli("purge", "--all", "--data", str(data))
    assert everything.returncode == 0, everything
    assert everything.json()["blobs"] == 0 and everything.json()["manifests"] == 0
    state = assert_consistent(data)
    assert (state.rows, state.manifests, state.tags) == ({}, 0, 0)


async def test_offline_command_on_a_folder_without_data_fails(cli: Cli, tmp_path: Path) -> None:
    result = await cli("stats", "--data", str(tmp_path / "nothing-here"))
    assert result.returncode == 1
    assert "mirror.db" in result.stderr and result.stdout == ""


async def test_commands_against_a_running_server(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    data = data_dir(tmp_path)
    image = hub.add_image(REPO, "3.19", [hub.make_blob(300_000, seed=n) for n in (1, 2)])
    mirror = await make_mirror(admin_token=TOKEN)
    await pull(session, mirror, image)
    server = ["--server", str(mirror.make_url("/")), "--token", TOKEN]
    stored = read_store(data)

    stats = await cli("stats", *server)
    assert stats.returncode == 0, stats
    assert stats.json()["storage"]["bytes"] == stored.file_bytes
    assert stats.json()["storage"]["blobs"] == 3
    # The token may come from the environment instead of the command line.
    from_env = await cli(
        "stats", "--server", str(mirror.make_url("/")), env={"MIRROR_ADMIN_TOKEN": TOKEN}
    )
    assert from_env.returncode == 0, from_env

    dry = await cli("purge", "--all", "--dry-run", *server)
    assert dry.returncode == 0, dry
    assert dry.json()["blobs"] == 3 and dry.json()["dry_run"] is True
    assert read_store(data) == stored

    gc = await cli("gc", *server)
    assert gc.returncode == 0, gc
    assert gc.json() == {"evicted_blobs": 0, "evicted_bytes": 0}

    ok = await cli("verify", *server)
    assert ok.returncode == 0, ok
    assert ok.json()["checked"] == 3 and ok.json()["corrupt"] == []
    bad = image.layer_digests[0]
    flip_bytes(blob_path(data, bad))
    corrupt = await cli("verify", *server)
    assert corrupt.returncode == 1, corrupt
    assert corrupt.json()["corrupt"] == [bad]
    assert bad not in assert_consistent(data).rows

    blob = await cli("purge", "--blob", image.layer_digests[1], *server)
    assert blob.returncode == 0, blob
    assert blob.json()["blobs"] == 1 and blob.json()["bytes"] == len(image.layers[1])
    one_tag = await cli("purge", "--repository", "alpine", "--tag", "3.19", *server)
    assert one_tag.returncode == 0, one_tag
    assert one_tag.json()["tags"] == 1
    assert one_tag.json()["digests"]["blobs"] == [image.config_digest]  # all it still held
    hub.reset_counts()
    await pull(session, mirror, image)
    assert hub.count(server="registry", method="GET", path_contains="/manifests/3.19") == 1
    assert hub.count(server="cdn", method="GET") == 3  # the corrupt, the purged, the config

    wrong = await cli("stats", "--server", str(mirror.make_url("/")), "--token", "x" * 20)
    assert wrong.returncode == 1
    assert "401" in wrong.stderr and wrong.stdout == ""
    assert "x" * 20 not in wrong.stderr
