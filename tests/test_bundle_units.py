"""images.txt and the lock file: what they mean, read back as written."""

from __future__ import annotations

import pytest

from mirror.cli.image_sets import parse_image_set
from mirror.upkeep.lockfile import (
    LockedImage,
    LockedManifest,
    dump_lock,
    load_lock,
    parse_image,
)

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "full", "path_name"),
    [
        ("alpine", "docker.io/library/alpine:latest", "library/alpine"),
        ("alpine:3.19", "docker.io/library/alpine:3.19", "library/alpine"),
        ("docker.io/alpine:3.19", "docker.io/library/alpine:3.19", "library/alpine"),
        ("index.docker.io/owner/app:1", "docker.io/owner/app:1", "owner/app"),
        ("ghcr.io/owner/tool:v1", "ghcr.io/owner/tool:v1", "ghcr.io/owner/tool"),
        ("localhost:5000/team/app", "localhost:5000/team/app:latest", "localhost:5000/team/app"),
        (f"redis@{DIGEST}", f"docker.io/library/redis@{DIGEST}", "library/redis"),
        (f"redis:7@{DIGEST}", f"docker.io/library/redis:7@{DIGEST}", "library/redis"),
    ],
)
def test_references_read_as_docker_pull_reads_them(text: str, full: str, path_name: str) -> None:
    reference = parse_image(text)
    assert (str(reference), reference.path_name) == (full, path_name)


@pytest.mark.parametrize("text", ["Alpine:1", "alpine:-bad", "alpine@sha256:abc", ""])
def test_a_bad_reference_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid|unsupported"):
        parse_image(text)


def test_platforms_per_line_or_for_the_lines_below() -> None:
    chosen = parse_image_set(
        "# ci\n"
        "busybox:1\n"
        "--platform linux/amd64   # from here on\n"
        "alpine:3.19\n"
        "ghcr.io/o/tool:v1 --platform linux/arm64 --platform=linux/arm/v7\n"
        "\n"
    )
    assert [(c.source, c.platforms) for c in chosen] == [
        ("busybox:1", ()),
        ("alpine:3.19", ("linux/amd64",)),
        ("ghcr.io/o/tool:v1", ("linux/arm64", "linux/arm/v7")),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a:1 b:2\n", "images.txt:1: one image a line"),
        ("\na:1 --platform\n", "images.txt:2: --platform needs a value"),
        ("a:1 --platform linux\n", "images.txt:1: platform 'linux' is not os/arch"),
        ("a:1 --all\n", "images.txt:1: unknown option '--all'"),
    ],
)
def test_an_unreadable_line_is_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_image_set(text)


def test_a_lock_reads_back_as_written_and_is_stable() -> None:
    images = [
        LockedImage(
            parse_image("alpine:3.19"),
            DIGEST,
            "application/vnd.oci.image.index.v1+json",
            1_700_000_000.0,
            ("linux/amd64",),
            (LockedManifest("sha256:" + "cd" * 32, "m", "linux/amd64", 1234),),
        ),
        LockedImage(
            parse_image("ghcr.io/o/tool:v1"),
            "sha256:" + "ef" * 32,
            "application/vnd.oci.image.manifest.v1+json",
            1_700_000_001.0,
            (),
            (LockedManifest("sha256:" + "ef" * 32, "m", None, 99),),
        ),
    ]
    text = dump_lock(images)
    assert load_lock(text) == images
    assert dump_lock(list(reversed(images))) == text  # keyed and sorted: order does not matter
    assert '"resolvedAt": "2023-11-14T22:13:20Z"' in text
