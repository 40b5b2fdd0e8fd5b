"""mirror.media_types.accepts: whether a client's Accept set takes a manifest's media type."""

from __future__ import annotations

import pytest

from mirror.media_types import (
    ALL_MANIFEST_TYPES,
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    accepts,
)


@pytest.mark.parametrize(
    "media_type",
    [*ALL_MANIFEST_TYPES, "application/vnd.docker.distribution.manifest.v1+json", "text/plain"],
)
def test_no_accept_header_takes_anything(media_type: str) -> None:
    assert accepts((), media_type)
    assert accepts([], media_type)


@pytest.mark.parametrize("media_type", [*ALL_MANIFEST_TYPES, "text/plain"])
def test_star_slash_star_takes_anything(media_type: str) -> None:
    assert accepts(("*/*",), media_type)
    assert accepts((DOCKER_MANIFEST, "*/*"), media_type)


def test_type_slash_star_takes_that_type_only() -> None:
    assert all(accepts(("application/*",), media_type) for media_type in ALL_MANIFEST_TYPES)
    assert not accepts(("text/*",), OCI_INDEX)
    assert not accepts(("application/vnd.oci.*",), OCI_INDEX)  # no wildcards inside a subtype


def test_exact_types_take_those_types_only() -> None:
    docker = (DOCKER_MANIFEST, DOCKER_LIST)  # what an older dockerd sends
    assert accepts(docker, DOCKER_MANIFEST)
    assert accepts(docker, DOCKER_LIST)
    assert not accepts(docker, OCI_INDEX)
    assert not accepts(docker, OCI_MANIFEST)
    assert accepts((OCI_MANIFEST,), OCI_MANIFEST)
    assert not accepts((OCI_MANIFEST,), OCI_INDEX)


def test_a_single_manifest_type_is_not_an_index() -> None:
    assert not accepts((DOCKER_MANIFEST,), DOCKER_LIST)
    assert not accepts((OCI_MANIFEST,), OCI_INDEX)


def test_every_manifest_type_is_listed_once() -> None:
    assert len(set(ALL_MANIFEST_TYPES)) == len(ALL_MANIFEST_TYPES)
    assert {OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST} <= set(ALL_MANIFEST_TYPES)
