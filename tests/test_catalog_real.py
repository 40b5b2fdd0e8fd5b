"""`mirror ls` in front of a real upstream (Debian's docker-registry), images pulled with skopeo:
an image and an OCI index of two platforms, in two repositories sharing a base layer."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

from fakes.ops import Cli, assert_consistent
from support.mirror_process import MirrorProcesses, process_config
from support.registry import Registry
from support.skopeo import Skopeo

from mirror.cli.listing import human_size

TOKEN = "catalog-real-token-0123456789"
SINGLE, INDEX = "test/oci:v1", "test/index:v1"  # support/images.py: both hold its _SHARED layer


def moment(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def by_name(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["repository"]: entry for entry in answer["repositories"]}


def test_ls_shows_two_repositories_sharing_a_layer_and_the_last_pull(
    upstream: Registry, skopeo: Skopeo, mirror_processes: MirrorProcesses, cli: Cli, tmp_path: Path
) -> None:
    single, index = upstream.images[SINGLE], upstream.images[INDEX]
    assert index.is_list and single.blobs & index.blobs, "the test images changed"
    config = {**process_config(upstream.url, tmp_path / "data"), "admin": {"token": TOKEN}}
    mirror = mirror_processes(config=config)
    skopeo.pull(mirror.host, single.ref, tmp_path / "single")
    skopeo.pull(mirror.host, index.ref, tmp_path / "index", all_platforms=True)

    server = ["--server", mirror.url, "--token", TOKEN]
    answer = cli.run("ls", *server, "--json")
    assert answer.returncode == 0, answer
    repos = by_name(answer.json())
    assert sorted(repos) == [index.repo, single.repo]
    assert [repos[name]["tags"] for name in (index.repo, single.repo)] == [1, 1]

    # The shared base layer counts as shared in both; everything else is unique to one, so
    # the unique bytes and the shared layer once are every blob byte on disk.
    disk = assert_consistent(mirror.data)
    (base,) = single.blobs & index.blobs
    shared = disk.files[base]
    assert [repos[name]["bytes"]["shared"] for name in (index.repo, single.repo)] == [shared] * 2
    unique = repos[index.repo]["bytes"]["unique"] + repos[single.repo]["bytes"]["unique"]
    assert unique + shared == disk.file_bytes
    assert repos[single.repo]["bytes"]["unique"] == sum(
        disk.files[digest] for digest in single.blobs - {base}
    )

    table = cli.run("ls", *server)
    assert table.returncode == 0, table
    row = next(line for line in table.stdout.splitlines() if line.startswith(single.repo))
    sizes = f"{human_size(repos[single.repo]['bytes']['unique'])} / {human_size(shared)}"
    assert sizes in row, row

    detail = cli.run("ls", *server, index.repo, "--json")
    assert detail.returncode == 0, detail
    (tag,) = detail.json()["tag_list"]
    assert tag["tag"] == index.tag and tag["digest"] == index.digest
    assert tag["media_type"] == index.media_type
    assert tag["platforms"] == ["linux/amd64", "linux/arm64"]

    # Pulled again: once the mirror stopped (it flushes its pull times on the way out), the
    # stopped folder shows the new pull on the tag and its repository, not on the other.
    (first,) = cli.run("ls", *server, single.repo, "--json").json()["tag_list"]
    again = time.time() - 0.001  # the times shown are cut to milliseconds
    skopeo.pull(mirror.host, single.ref, tmp_path / "again")
    assert mirror.stop() == 0
    offline = ["--config", str(mirror.config_path)]
    (pulled,) = cli.run("ls", *offline, single.repo, "--json").json()["tag_list"]
    assert pulled["resolved_at"] == first["resolved_at"]  # a hit: not resolved again
    assert moment(pulled["last_pulled"]) >= again > moment(first["resolved_at"])
    after = by_name(cli.run("ls", *offline, "--json").json())
    assert moment(after[single.repo]["last_pulled"]) >= again
    # The index's platforms were pulled by digest before: later than its tag, not again.
    assert moment(repos[index.repo]["last_pulled"]) <= moment(after[index.repo]["last_pulled"])
    assert moment(after[index.repo]["last_pulled"]) < again
    assert after[index.repo]["bytes"] == repos[index.repo]["bytes"]
    listed = cli.run("ls", *offline, single.repo)
    assert listed.returncode == 0 and "single" in listed.stdout, listed
