"""mirror.reference: repository names, tags and digests as the registry API receives them."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mirror.errors import DigestInvalid, MirrorError, NameInvalid, TagInvalid
from mirror.reference import Digest, Tag, parse_reference, parse_repository
from unit.strategies import awkward_text

SHA256_EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
HEX64 = "0123456789abcdef" * 4
HEX128 = HEX64 * 2

# What a component is and what a whole name is, written out here as the OCI spec states them.
COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME = re.compile(rf"{COMPONENT}(?:/{COMPONENT})*")
TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


# Repository names


@pytest.mark.parametrize(
    ("text", "docker_hub", "expected"),
    [
        ("alpine", True, "library/alpine"),
        ("alpine", False, "alpine"),
        ("library/alpine", True, "library/alpine"),
        ("bitnami/redis", True, "bitnami/redis"),
        ("a/b/c/d", True, "a/b/c/d"),
    ],
)
def test_docker_hub_names_without_a_slash_are_official_images(
    text: str, docker_hub: bool, expected: str
) -> None:
    assert parse_repository(text, docker_hub) == expected


@pytest.mark.parametrize(
    "name",
    ["a", "0", "my.app", "my_app", "my__app", "my-app", "my---app", "a1/b2", "org/team/app.v2"],
)
def test_components_may_use_the_spec_separators(name: str) -> None:
    assert parse_repository(name, docker_hub=False) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Alpine",  # no uppercase
        "a//b",
        "/a",
        "a/",
        "a..b",
        "a___b",  # one or two underscores, not three
        "a._b",
        "-a",
        "a-",
        "_a",
        ".a",
        "a b",
        "a:b",
        "a@b",
        "ä",
        "alpine\n",  # a newline before the end once passed `$`
        "library/alpine\n",
    ],
)
def test_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(NameInvalid) as caught:
        parse_repository(name, docker_hub=True)
    assert caught.value.status == 400
    assert caught.value.code == "NAME_INVALID"
    assert caught.value.detail == {"name": name}


def test_a_name_may_be_255_characters_long() -> None:
    name = "a/" + "b" * 253
    assert parse_repository(name, docker_hub=True) == name
    with pytest.raises(NameInvalid):
        parse_repository(name + "b", docker_hub=True)
    assert parse_repository("a" * 255, docker_hub=False) == "a" * 255


def test_the_255_limit_counts_the_library_prefix() -> None:
    # The name sent upstream and stored is library/…, so that is the one that must fit.
    assert parse_repository("a" * 247, docker_hub=True) == "library/" + "a" * 247
    with pytest.raises(NameInvalid):
        parse_repository("a" * 248, docker_hub=True)


def test_a_huge_name_is_refused_with_a_bounded_message() -> None:
    with pytest.raises(NameInvalid) as caught:
        parse_repository("a" * 100_000, docker_hub=True)
    assert len(caught.value.message) < 400


# Tags


@pytest.mark.parametrize("text", ["latest", "v1.2.3", "_private", "A", "1", "3.19-r0", "a" * 128])
def test_valid_tags_parse_and_print_unchanged(text: str) -> None:
    tag = Tag.parse(text)
    assert tag == Tag(text)
    assert str(tag) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "a" * 129,
        ".hidden",
        "-rc1",
        "a/b",
        "a:b",
        "a b",
        "ü",
        "latest\n",  # a newline before the end once passed `$`
        " latest",
    ],
)
def test_malformed_tags_are_refused(text: str) -> None:
    with pytest.raises(TagInvalid) as caught:
        Tag.parse(text)
    assert caught.value.code == "TAG_INVALID"


# Digests


@pytest.mark.parametrize(
    ("text", "algorithm", "encoded"),
    [(f"sha256:{HEX64}", "sha256", HEX64), (f"sha512:{HEX128}", "sha512", HEX128)],
)
def test_sha256_and_sha512_digests_parse(text: str, algorithm: str, encoded: str) -> None:
    digest = Digest.parse(text)
    assert (digest.algorithm, digest.hex) == (algorithm, encoded)
    assert str(digest) == text


@pytest.mark.parametrize(
    "text",
    [
        f"sha256:{HEX64[:-1]}",  # 63
        f"sha256:{HEX64}0",  # 65
        f"sha512:{HEX64}",  # a sha256 length under sha512
        f"sha256:{HEX64.upper()}",  # the OCI spec's sha256 encoding is lowercase hex
        f"sha256:{'g' * 64}",
        f"SHA256:{HEX64}",
        "sha256:",
        "sha256",
        f":{HEX64}",
        f" sha256:{HEX64}",
        f"sha256:{HEX64}\n",  # a newline before the end once passed `$`
        f"sha256:{HEX64} ",
        f"sha256::{HEX64}",
    ],
)
def test_malformed_digests_are_refused(text: str) -> None:
    with pytest.raises(DigestInvalid) as caught:
        Digest.parse(text)
    assert caught.value.code == "DIGEST_INVALID"


@pytest.mark.parametrize(
    "text", [f"md5:{HEX64[:32]}", f"sha384:{HEX64}{HEX64[:32]}", f"blake3:{HEX64}", f"x+y:{HEX64}"]
)
def test_algorithms_we_cannot_verify_are_refused(text: str) -> None:
    with pytest.raises(DigestInvalid, match="unsupported digest algorithm"):
        Digest.parse(text)


def test_digest_of_data_matches_that_data_only() -> None:
    assert str(Digest.of(b"")) == SHA256_EMPTY
    digest = Digest.of(b"layer")
    assert digest.matches(b"layer")
    assert not digest.matches(b"layer!")
    hasher = Digest.parse(f"sha512:{HEX128}").hasher()
    hasher.update(b"x")
    assert hasher.hexdigest() == hashlib.sha512(b"x").hexdigest()


# References


def test_a_reference_with_a_colon_is_a_digest_else_a_tag() -> None:
    assert parse_reference("latest") == Tag("latest")
    assert parse_reference(SHA256_EMPTY) == Digest.parse(SHA256_EMPTY)


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("sha256:abc", DigestInvalid),
        ("latest:1", DigestInvalid),
        ("", TagInvalid),
        ("a b", TagInvalid),
    ],
)
def test_a_malformed_reference_names_the_kind_it_looked_like(
    text: str, error: type[MirrorError]
) -> None:
    with pytest.raises(error):
        parse_reference(text)


# Properties: valid values survive parse -> str -> parse; any text parses or raises one error.

alnum = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
separators = st.sampled_from([".", "_", "__", "-", "---"])
components = st.builds(
    lambda first, rest: first + "".join(sep + more for sep, more in rest),
    alnum,
    st.lists(st.tuples(separators, alnum), max_size=3),
)
names = st.one_of(
    st.lists(components, min_size=1, max_size=6).map("/".join),
    # long names, around the 255 limit with and without the library/ prefix
    st.integers(1, 260).map(lambda n: "a" * n),
    st.integers(1, 260).map(lambda n: "org/" + "b" * n),
)
TAG_CHARS = "abcxyzABCXYZ0189_"
tags = st.builds(
    str.__add__,
    st.sampled_from(TAG_CHARS),
    st.one_of(st.text(TAG_CHARS + ".-", max_size=12), st.just("a" * 127)),
)
digests = st.one_of(
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map("sha256:".__add__),
    st.text(alphabet="0123456789abcdef", min_size=128, max_size=128).map("sha512:".__add__),
)


@given(names, st.booleans())
@example("a" * 250, True)  # was "library/" + 250 a's: 258 characters, refused when re-parsed
def test_a_parsed_name_parses_again_to_itself(name: str, docker_hub: bool) -> None:
    try:
        once = parse_repository(name, docker_hub)
    except NameInvalid:
        assert len(name) > 255 - (8 if docker_hub and "/" not in name else 0)
        return
    assert parse_repository(once, docker_hub) == once
    assert once == name or (docker_hub and once == f"library/{name}")


@given(awkward_text("abc019._-/A:"), st.booleans())
@example("alpine\n", False)  # was accepted, newline and all
def test_any_text_is_a_valid_name_or_name_invalid(text: str, docker_hub: bool) -> None:
    try:
        name = parse_repository(text, docker_hub)
    except NameInvalid:
        return
    assert NAME.fullmatch(name)
    assert len(name) <= 255


@given(tags)
def test_a_parsed_tag_prints_as_it_was_written(text: str) -> None:
    tag = Tag.parse(text)
    assert str(tag) == text
    assert Tag.parse(str(tag)) == tag


@given(awkward_text("abcAZ09_.-:"))
@example("latest\n")  # was accepted, newline and all
def test_any_text_is_a_valid_tag_or_tag_invalid(text: str) -> None:
    try:
        tag = Tag.parse(text)
    except TagInvalid:
        return
    assert TAG.fullmatch(tag.name)
    assert tag.name == text


@given(digests)
def test_a_parsed_digest_prints_as_it_was_written(text: str) -> None:
    digest = Digest.parse(text)
    assert str(digest) == text
    assert Digest.parse(str(digest)) == digest


@given(
    st.one_of(
        awkward_text("sha256:0123456789abcdefABCDEF+._-="),
        digests.map(lambda d: d + "\n"),
        digests.map(lambda d: d[:-1]),
        digests.map(str.upper),
    )
)
@example(f"sha256:{HEX64}\n")  # was accepted as the digest without the newline
def test_any_text_is_a_digest_that_prints_back_or_digest_invalid(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except DigestInvalid:
        return
    assert str(digest) == text


@given(st.one_of(awkward_text("sha256:0123456789abcdef_.-"), tags, digests))
def test_any_text_is_a_reference_or_tag_or_digest_invalid(text: str) -> None:
    try:
        reference = parse_reference(text)
    except (TagInvalid, DigestInvalid):
        return
    assert str(reference) == text
