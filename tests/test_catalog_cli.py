"""`mirror ls [REPO]` against the fake hub: over the admin API (--server, every page) and on a
stopped data folder (--data), as tables and as the API's JSON; and its formatting."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from fakes import FakeHub
from fakes.client import MakeMirror, pull
from fakes.ops import Cli
from test_catalog_api import TOKEN, Shop, fetch, flush, get

from mirror.cli import listing

NOW = 1_800_000_000.0


def test_sizes_are_human_readable() -> None:
    cases = {0: "0 B", 999: "999 B", 1000: "1.0 kB", 12_345_678: "12.3 MB", 999_960: "1.0 MB"}
    assert {size: listing.human_size(size) for size in cases} == cases
    assert listing.human_size(3 * 10**18) == "3000.0 PB"


def test_times_are_relative_when_recent() -> None:
    assert listing.when(None, NOW) == "-"
    assert listing.when("2027-01-15T08:00:00Z", NOW) == "just now"  # NOW + 0
    assert listing.when("2027-01-15T07:55:00.500Z", NOW) == "4m ago"
    assert listing.when("2027-01-15T05:00:00Z", NOW) == "3h ago"
    assert listing.when("2027-01-13T08:00:00Z", NOW) == "2d ago"
    assert listing.when("2026-12-01T08:00:00Z", NOW) == "2026-12-01 08:00"
    assert listing.when("not a time", NOW) == "not a time"


def test_table_columns_line_up() -> None:
    text = listing.table(["A", "BB"], [["xxx", "y"], ["z", "long value"]])
    assert text.splitlines() == ["A    BB", "xxx  y", "z    long value"]


async def test_ls_over_the_admin_api_follows_every_page(
    cli: Cli,
    hub: FakeHub,
    make_mirror: MakeMirror,
    session: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop = Shop(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    await shop.pull_all(session, mirror)
    repos = [f"team/r{n}" for n in range(5)]
    for seed, repo in enumerate(repos, start=20):
        image = hub.add_image(repo, "v1", [hub.make_blob(1000, seed=seed)])
        await fetch(session, mirror, f"/v2/{repo}/manifests/{image.tag}")
    server = ["--server", str(mirror.make_url("/")), "--token", TOKEN]
    monkeypatch.setattr(listing, "PAGE_SIZE", 2)  # four pages of two for seven repositories

    answer = await cli("ls", *server, "--json")
    assert answer.returncode == 0, answer
    everything = await get(session, mirror, "/admin/catalog")
    assert answer.json() == everything
    assert [r["repository"] for r in answer.json()["repositories"]] == [
        "library/alpine",
        "team/app",
        *repos,
    ]

    shown = await cli("ls", *server)
    assert shown.returncode == 0 and shown.stderr == "", shown
    header, *rows = shown.stdout.splitlines()
    assert header.split() == ["REPO", "TAGS", "SIZE", "(UNIQUE", "/", "SHARED)", "LAST", "PULLED"]
    assert [row.split()[:2] for row in rows] == [
        ["library/alpine", "1"],
        ["team/app", "2"],
        *[[repo, "1"] for repo in repos],
    ]
    alpine = everything["repositories"][0]["bytes"]
    assert (
        listing.human_size(alpine["unique"]) + " / " + listing.human_size(alpine["shared"])
        in (rows[0])
    )

    teams = await cli("ls", *server, "--prefix", "team/r", "--json")
    assert [r["repository"] for r in teams.json()["repositories"]] == repos


async def test_ls_of_one_repository_and_offline_on_the_stopped_folder(
    cli: Cli, hub: FakeHub, make_mirror: MakeMirror, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    shop = Shop(hub)
    mirror = await make_mirror(admin_token=TOKEN)
    await shop.pull_all(session, mirror)
    await pull(session, mirror, shop.alpine)
    await flush(mirror)
    server = ["--server", str(mirror.make_url("/")), "--token", TOKEN]
    online = await cli("ls", *server, "team/app", "--json")
    assert online.returncode == 0, online
    assert online.json() == await get(session, mirror, "/admin/catalog/team/app")
    online_list = (await cli("ls", *server, "--json")).json()

    table = await cli("ls", *server, "team/app")
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["TAG", "DIGEST", "TYPE", "PLATFORMS", "RESOLVED", "LAST", "PULLED"]
    assert rows[0].split()[:4] == ["1", shop.app.manifest_digest[:19], "oci", "single"]
    assert rows[1].split()[:4][2:] == ["oci-index", "linux/amd64,linux/arm64"]
    assert rows[-1].startswith("docker.io/team/app: 2 tags, ")

    data = ["--data", str(tmp_path / "data")]
    live = await cli("ls", *data)
    assert live.returncode == 2 and "in use by another mirror process" in live.stderr, live
    await mirror.close()  # pull times are flushed on the way out, and the folder is free

    offline = await cli("ls", *data, "team/app", "--json")
    assert offline.returncode == 0, offline
    assert offline.json() == online.json()
    assert (await cli("ls", *data, "--json")).json() == online_list
    short = await cli("ls", *data, "alpine")
    assert short.returncode == 0 and short.stdout.startswith("TAG"), short

    unknown = await cli("ls", *data, "team/nothing")
    assert unknown.returncode == 1, unknown
    assert unknown.stderr == "mirror ls: repository team/nothing is not cached from docker.io\n"
    nowhere = await cli("ls", *data, "--upstream", "nowhere")
    assert nowhere.returncode == 1 and "no upstream named 'nowhere'" in nowhere.stderr
