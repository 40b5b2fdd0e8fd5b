"""mirror.upstream.auth.parse_challenge: what a registry's WWW-Authenticate header asks for."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mirror.upstream.auth import Challenge, parse_challenge

DOCKER_HUB = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:library/alpine:pull"'
)


def test_docker_hubs_bearer_challenge() -> None:
    assert parse_challenge(DOCKER_HUB) == Challenge(
        scheme="bearer",
        realm="https://auth.docker.io/token",
        service="registry.docker.io",
        scope="repository:library/alpine:pull",
    )


def test_a_scope_with_commas_and_colons_stays_whole() -> None:
    header = 'Bearer realm="https://auth/token",scope="repository:a/b:pull,push",service="reg"'
    challenge = parse_challenge(header)
    assert challenge is not None
    assert challenge.scope == "repository:a/b:pull,push"
    assert challenge.service == "reg"


def test_quoted_values_unescape_quotes_and_backslashes() -> None:
    header = r'Bearer realm="https://auth/token?x=\"y\"",service="a\\b,c"'
    challenge = parse_challenge(header)
    assert challenge is not None
    assert challenge.realm == 'https://auth/token?x="y"'
    assert challenge.service == "a\\b,c"


def test_unquoted_values_end_at_a_comma_or_space() -> None:
    challenge = parse_challenge("Bearer realm=https://auth/token,service=reg scope=x")
    assert challenge == Challenge("bearer", "https://auth/token", "reg", "x")


def test_spaces_around_equals_and_commas_are_allowed() -> None:
    challenge = parse_challenge('  Bearer realm = "https://auth/token" , service = "reg"  ')
    assert challenge == Challenge("bearer", "https://auth/token", "reg", None)


def test_scheme_and_keys_are_case_insensitive_values_are_not() -> None:
    challenge = parse_challenge('BEARER Realm="https://Auth/Token",SERVICE="Reg",Scope="S"')
    assert challenge == Challenge("bearer", "https://Auth/Token", "Reg", "S")


def test_other_parameters_are_ignored() -> None:
    header = DOCKER_HUB + ',error="insufficient_scope"'
    assert parse_challenge(header) == parse_challenge(DOCKER_HUB)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('Basic realm="Registry Realm"', Challenge("basic", "Registry Realm", None, None)),
        ("basic", Challenge("basic", "", None, None)),  # Basic needs no realm
        ("Basic charset=UTF-8", Challenge("basic", "", None, None)),
    ],
)
def test_basic(header: str, expected: Challenge) -> None:
    assert parse_challenge(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        'Digest realm="x", nonce="y"',
        "Negotiate",
        'Bearerx realm="x"',
        "",
        "   ",
        'realm="https://auth/token"',
    ],
)
def test_other_schemes_are_not_understood(header: str) -> None:
    assert parse_challenge(header) is None


@pytest.mark.parametrize(
    "header", ["Bearer", 'Bearer service="reg"', 'Bearer realm=""', 'Bearer scope="realm=x"']
)
def test_bearer_without_a_realm_is_not_understood(header: str) -> None:
    assert parse_challenge(header) is None


# Properties: a challenge written with any values reads back the same; any text never raises.

values = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=30)


def quote(value: str) -> str:
    """An RFC 9110 quoted-string: backslash before each quote and backslash."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@given(
    st.sampled_from(["Bearer", "bearer", "BEARER", "Basic"]),
    values.filter(bool),
    st.one_of(st.none(), values),
    st.one_of(st.none(), values),
    st.permutations(["realm", "service", "scope"]),
    st.sampled_from([",", ", ", " , "]),
)
@example("Bearer", 'a"b', None, None, ["realm", "service", "scope"], ",")  # read back as a\"b
def test_a_written_challenge_reads_back(
    scheme: str,
    realm: str,
    service: str | None,
    scope: str | None,
    order: list[str],
    separator: str,
) -> None:
    given_values = {"realm": realm, "service": service, "scope": scope}
    params = [f"{key}={quote(v)}" for key in order if (v := given_values[key]) is not None]
    header = f"{scheme} {separator.join(params)}"
    assert parse_challenge(header) == Challenge(scheme.lower(), realm, service, scope)


@given(st.one_of(st.text(), st.text().map("Bearer ".__add__), st.text().map("Basic ".__add__)))
def test_any_header_is_a_challenge_or_none(header: str) -> None:
    challenge = parse_challenge(header)
    if challenge is not None:
        assert challenge.scheme in ("bearer", "basic")
        assert challenge.realm or challenge.scheme == "basic"
