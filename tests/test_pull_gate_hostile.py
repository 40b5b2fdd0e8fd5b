"""The pull gate under hostile input: path tricks against the admin port split and the /v2/
rules, forged X-Forwarded-For, hostile Authorization headers, floods of wrong passwords,
and htpasswd files that are not what they should be."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from aiohttp.test_utils import TestServer
from fakes.client import start_mirror as start

from mirror.web import htpasswd

TOKEN = "hostile-admin-token-0123456789"


async def raw(server: TestServer, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data


def get(path: str, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return (
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + b"\r\n"
    )


def users_file(tmp_path: Path, user: bytes, password: bytes) -> Path:
    path = tmp_path / "htpasswd"
    hashed = bcrypt.hashpw(password[:72], bcrypt.gensalt(rounds=5))
    path.write_bytes(user + b":" + hashed + b"\n")
    return path


@pytest.mark.parametrize(
    "path",
    [
        "//admin/stats",
        "/%61dmin/stats",
        "/admin/../admin/stats",
        "/v2/../admin/stats",
        "/ADMIN/stats",
        "/admin./stats",
        "/metrics/",
        "//metrics",
        "/%6detrics",
        "/admin/stats?x=1",
        "/./admin/stats",
        "/admin%2fstats",
    ],
)
async def test_admin_routes_are_not_reachable_on_the_pull_port_by_path_tricks(
    aiohttp_server: Any, mirror_config: dict[str, Any], path: str
) -> None:
    mirror = await start(
        aiohttp_server, mirror_config, admin={"token": TOKEN, "listen": "127.0.0.1:1"}
    )
    status, data = await raw(mirror, get(path, b"Authorization: Bearer " + TOKEN.encode()))
    assert status == 404, data[:400]


@pytest.mark.parametrize(
    "path",
    [
        "/v2/",
        "//v2/",
        "/v2",
        "/%762/",
        "/V2/",
        "/./v2/",
        "/v2/../v2/",
        "/v2/library/a/tags/list",
        "//v2/library/a/tags/list",
        "/x/../v2/",
    ],
)
async def test_v2_rules_are_not_bypassed_by_path_tricks(
    aiohttp_server: Any, mirror_config: dict[str, Any], path: str
) -> None:
    mirror = await start(aiohttp_server, mirror_config, server={"allow": ["10.0.0.0/8"]})
    status, data = await raw(mirror, get(path))
    assert status in (403, 404), data[:400]


@pytest.mark.parametrize(
    "xff",
    [
        [b"X-Forwarded-For: 10.1.2.3"],
        [b"X-Forwarded-For: 192.0.2.1", b"X-Forwarded-For: 10.1.2.3"],  # second header ours
        [b"X-Forwarded-For: 10.1.2.3, ::ffff:127.0.0.1"],
        [b"X-Forwarded-For: ::ffff:10.1.2.3"],
    ],
)
async def test_forwarded_for_from_a_trusted_proxy_is_believed(
    aiohttp_server: Any, mirror_config: dict[str, Any], xff: list[bytes]
) -> None:
    mirror = await start(
        aiohttp_server,
        mirror_config,
        server={"allow": ["10.1.0.0/16"], "trusted_proxies": ["127.0.0.1/32"]},
    )
    status, data = await raw(mirror, get("/v2/", *xff))
    assert status == 200, data[:400]


@pytest.mark.parametrize(
    "xff",
    [
        [b"X-Forwarded-For: 10.1.2.3, 192.0.2.1"],
        [b"X-Forwarded-For: 10.1.2.3", b"X-Forwarded-For: 192.0.2.1"],
        [b"X-Forwarded-For: 10.1.2.3, garbage"],
        [b"X-Forwarded-For: 10.1.2.3,"],
        [b"X-Forwarded-For: 10.1.2.3, 127.0.0.1%lo"],
        [b"X-Forwarded-For: 10.1.2.3:1234"],
        [b"X-Forwarded-For: [10.1.2.3]"],
        [b"X-Forwarded-For: 10.1.2.3 " + b"," * 5000],
        [b"X-Forwarded-For: \xff\xfe10.1.2.3"],
    ],
)
async def test_forged_or_garbled_forwarded_for_is_not_believed(
    aiohttp_server: Any, mirror_config: dict[str, Any], xff: list[bytes]
) -> None:
    mirror = await start(
        aiohttp_server,
        mirror_config,
        server={"allow": ["10.1.0.0/16"], "trusted_proxies": ["127.0.0.1/32"]},
    )
    status, data = await raw(mirror, get("/v2/", *xff))
    assert status in (400, 403), data[:400]


@pytest.mark.parametrize(
    "authorization",
    [
        b"Basic \xc3\xa9",  # non-ASCII (UTF-8) in the base64 part
        b"Basic \xff\xfe",  # not UTF-8 at all
        b"Basic " + base64.b64encode(b"alice:" + b"x" * 100),  # a password over 72 bytes
        b"Basic " + base64.b64encode(b"alice:\xff"),
        b"Basic " + base64.b64encode(b"alice:a\x00b"),
        b"Basic " + base64.b64encode(b"\xff:x"),
        b"Basic " + b"A" * 7000,
        b"Basic",
        b"basic   " + base64.b64encode(b"alice:wrong"),
    ],
)
async def test_hostile_authorization_headers_are_401_not_500(
    aiohttp_server: Any, mirror_config: dict[str, Any], tmp_path: Path, authorization: bytes
) -> None:
    users = users_file(tmp_path, b"alice", b"wonderland")
    mirror = await start(aiohttp_server, mirror_config, auth={"htpasswd": str(users)})
    status, data = await raw(mirror, get("/v2/", b"Authorization: " + authorization))
    assert status in (400, 401, 431), data[:400]


async def test_a_user_whose_password_is_over_72_bytes_may_pull(
    aiohttp_server: Any, mirror_config: dict[str, Any], tmp_path: Path
) -> None:
    """htpasswd -B (Apache) truncates at 72 bytes, as bcrypt always did; the operator gave
    this user this password."""
    password = b"p" * 80
    users = users_file(tmp_path, b"alice", password)
    mirror = await start(aiohttp_server, mirror_config, auth={"htpasswd": str(users)})
    status, data = await raw(
        mirror, get("/v2/", b"Authorization: Basic " + base64.b64encode(b"alice:" + password))
    )
    assert status == 200, data[:400]


async def test_a_password_with_a_colon(
    aiohttp_server: Any, mirror_config: dict[str, Any], tmp_path: Path
) -> None:
    users = users_file(tmp_path, b"alice", b"a:b:c")
    mirror = await start(aiohttp_server, mirror_config, auth={"htpasswd": str(users)})
    status, data = await raw(
        mirror, get("/v2/", b"Authorization: Basic " + base64.b64encode(b"alice:a:b:c"))
    )
    assert status == 200, data[:400]


class CountedChecks:
    """bcrypt's checks as the mirror runs them (in worker threads): how many, at which cost."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.costs: list[int] = []
        real = bcrypt.checkpw

        def counted(password: bytes, hashed: bytes) -> bool:
            self.costs.append(int(hashed[4:6]))
            return bool(real(password, hashed))

        monkeypatch.setattr(bcrypt, "checkpw", counted)  # the module htpasswd.py calls


def basic(user: bytes, password: bytes, client: str = "127.0.0.1") -> bytes:
    return get(
        "/v2/",
        b"Authorization: Basic " + base64.b64encode(user + b":" + password),
        b"X-Forwarded-For: " + client.encode(),
    )


async def test_a_flood_of_one_wrong_password_costs_one_check_and_no_wait_for_others(
    aiohttp_server: Any,
    mirror_config: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """150 requests with the same wrong password run bcrypt once, not 150 times in a queue a
    valid user's first check would wait behind."""
    path = tmp_path / "htpasswd"
    lines = [b"alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=10))]
    lines.append(b"mallory:" + bcrypt.hashpw(b"x", bcrypt.gensalt(rounds=10)))
    path.write_bytes(b"\n".join(lines) + b"\n")
    mirror = await start(aiohttp_server, mirror_config, auth={"htpasswd": str(path)})
    checks = CountedChecks(monkeypatch)
    flood = await asyncio.gather(*(raw(mirror, basic(b"mallory", b"guess")) for _ in range(150)))
    assert {status for status, _ in flood} == {401}
    assert len(checks.costs) == 1
    status, _ = await raw(mirror, basic(b"alice", b"wonderland"))
    assert status == 200
    assert len(checks.costs) == 2


async def test_an_address_guessing_many_passwords_is_refused_unchecked_others_are_not(
    aiohttp_server: Any,
    mirror_config: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Distinct guesses from one address cost a bounded number of checks per minute; a user
    elsewhere still gets hers."""
    path = tmp_path / "htpasswd"
    path.write_bytes(b"alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=5)) + b"\n")
    mirror = await start(
        aiohttp_server,
        mirror_config,
        auth={"htpasswd": str(path)},
        server={"trusted_proxies": ["127.0.0.1/32"]},
    )
    checks = CountedChecks(monkeypatch)
    for guess in range(htpasswd.MAX_FAILURES + 20):
        status, _ = await raw(mirror, basic(b"alice", f"guess-{guess}".encode(), "10.9.9.9"))
        assert status == 401
    assert len(checks.costs) == htpasswd.MAX_FAILURES
    status, _ = await raw(mirror, basic(b"alice", b"wonderland", "10.1.1.1"))
    assert status == 200
    assert len(checks.costs) == htpasswd.MAX_FAILURES + 1


async def test_an_unknown_user_is_checked_at_the_files_cost(
    aiohttp_server: Any,
    mirror_config: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An unknown user's request runs the same work as a wrong password (a check at the
    file's cost), so answer times do not tell which users exist."""
    path = tmp_path / "htpasswd"
    path.write_bytes(b"alice:" + bcrypt.hashpw(b"wonderland", bcrypt.gensalt(rounds=12)) + b"\n")
    mirror = await start(aiohttp_server, mirror_config, auth={"htpasswd": str(path)})
    checks = CountedChecks(monkeypatch)
    assert (await raw(mirror, basic(b"alice", b"guess")))[0] == 401
    assert (await raw(mirror, basic(b"nobody", b"guess")))[0] == 401
    assert checks.costs == [12, 12]


@pytest.mark.parametrize(
    "line", [b"alice:$2y$05$truncated", b"alice:$2y$", b"alice:$2b$99$" + b"a" * 53]
)
async def test_a_malformed_bcrypt_hash_is_refused_at_load_or_401_not_500(
    aiohttp_server: Any, mirror_config: dict[str, Any], tmp_path: Path, line: bytes
) -> None:
    """parse() checks only the $2y$ prefix: a truncated hash (a file read mid-write, a bad
    copy) loads, and then each of that user's requests raises ValueError('Invalid salt')."""
    from mirror.errors import StartupError

    path = tmp_path / "htpasswd"
    path.write_bytes(line + b"\n")
    try:
        mirror = await start(aiohttp_server, mirror_config, auth={"htpasswd": str(path)})
    except StartupError:
        return  # refused at load: fine
    status, data = await raw(
        mirror, get("/v2/", b"Authorization: Basic " + base64.b64encode(b"alice:guess"))
    )
    assert status == 401, data[:300]
