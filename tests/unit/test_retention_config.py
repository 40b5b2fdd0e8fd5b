"""storage.max_unused_age and storage.pinned as an operator writes them, and the removal
counters created at zero for exactly the (reason, kind) pairs the code can count."""

from __future__ import annotations

import ast

import pytest

from mirror.config import ConfigError, parse_config
from mirror.metrics import REMOVALS
from mirror.stores.pins import Pins

from .test_metrics import callee, calls, literals


def storage(**keys: object) -> dict[str, object]:
    return {"storage": keys}


def test_retention_is_off_unless_set() -> None:
    config = parse_config({})
    assert config.storage.max_unused_age == 0 and config.storage.pinned == ()


def test_max_unused_age_takes_a_duration() -> None:
    assert parse_config(storage(max_unused_age="30d")).storage.max_unused_age == 30 * 86400
    with pytest.raises(ConfigError, match=r"storage\.max_unused_age"):
        parse_config(storage(max_unused_age="a month"))


def test_a_misspelt_key_is_named_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'max_unused_age'"):
        parse_config(storage(max_unused_ages="30d"))
    with pytest.raises(ConfigError, match="did you mean 'pinned'"):
        parse_config(storage(pined=["alpine"]))


@pytest.mark.parametrize("value", ["alpine", [1], ["Alpine"], ["a b"], ["x:"], ["ok", ""]])
def test_pinned_must_be_a_list_of_patterns(value: object) -> None:
    with pytest.raises(ConfigError, match=r"storage\.pinned"):
        parse_config(storage(pinned=value))


def test_pins_match_names_as_the_registry_api_stores_them() -> None:
    patterns = ["alpine", "myorg/app:v1", "team/*", "tools/*:release-*"]
    config = parse_config(storage(pinned=patterns))
    pins = Pins(config.storage.pinned, ["docker.io"])
    assert pins.tag("docker.io", "library/alpine", "3.19")  # `alpine` is library/alpine there
    assert not pins.tag("ghcr.io", "library/alpine", "3.19")
    assert pins.tag("ghcr.io", "alpine", "3.19")  # elsewhere a name is as written
    assert pins.repository("docker.io", "library/alpine")
    assert pins.tag("docker.io", "myorg/app", "v1")
    assert not pins.tag("docker.io", "myorg/app", "v2")
    assert not pins.repository("docker.io", "myorg/app")  # a tag pin is not a repository pin
    assert pins.tag("docker.io", "team/api", "anything") and pins.repository("docker.io", "team/x")
    assert pins.tag("docker.io", "tools/lint", "release-1")
    assert not pins.tag("docker.io", "tools/lint", "main")
    assert not Pins((), ["docker.io"])


def test_removal_counters_exist_for_exactly_what_the_code_counts() -> None:
    kinds = {"tags": "tag", "manifests": "manifest", "blobs": "blob"}
    counted: set[tuple[str, str]] = set()
    for call in calls():
        if callee(call) in ("_metrics.removed", "metrics.removed") and call.args:
            for reason in literals(call.args[0]):
                counted |= {
                    (reason, kinds[keyword.arg])
                    for keyword in call.keywords
                    if keyword.arg in kinds and not _zero(keyword.value)
                }
    assert counted == set(REMOVALS)


def _zero(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value == 0
