"""Who may pull: networks (`server.allow`, X-Forwarded-For only from `trusted_proxies`) and
users from an htpasswd file of bcrypt hashes; and an admin port of its own. All of it off by
default; every refusal is an OCI error body."""

from __future__ import annotations

import subprocess
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import encode_basic_auth, web
from aiohttp.test_utils import TestServer
from fakes.client import start_mirror as start
from support.images import Image
from support.mirror_process import (
    MirrorProcess,
    MirrorProcesses,
    process_config,
    serve_expecting_exit,
)
from support.poll import eventually
from support.procs import free_port, need
from support.registry import Registry
from support.skopeo import Skopeo, SkopeoError, diff_dirs

ServerFactory = Callable[[web.Application], Awaitable[TestServer]]
TOKEN = "gate-admin-token-0123456789"


def htpasswd(path: Path, user: str, password: str, *options: str) -> None:
    """Add or change a user with Apache's own tool (bcrypt: -B), as an operator would."""
    need("htpasswd", why="Debian's apache2-utils")
    create = [] if path.exists() else ["-c"]
    subprocess.run(
        ["htpasswd", *create, "-b", *options, str(path), user, password],
        check=True,
        capture_output=True,
    )


async def answer(
    session: aiohttp.ClientSession,
    server: TestServer,
    path: str = "/v2/",
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> tuple[int, str | None, Any]:
    headers = dict(headers or {})
    if auth is not None:
        headers["Authorization"] = encode_basic_auth(*auth)
    async with session.get(server.make_url(path), headers=headers) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, resp.headers.get("WWW-Authenticate"), await resp.json()


def code_of(body: Any) -> str:
    return str(body["errors"][0]["code"])


async def test_only_allowed_networks_pull_and_forwarded_addresses_need_a_trusted_proxy(
    aiohttp_server: ServerFactory, mirror_config: dict[str, Any], session: aiohttp.ClientSession
) -> None:
    elsewhere = await start(aiohttp_server, mirror_config, server={"allow": ["10.0.0.0/8"]})
    status, _, body = await answer(session, elsewhere)
    assert (status, code_of(body)) == (403, "DENIED")
    forged = {"X-Forwarded-For": "10.1.2.3"}  # from a client no proxy of ours stands for
    assert (await answer(session, elsewhere, headers=forged))[0] == 403
    async with session.get(elsewhere.make_url("/healthz")) as resp:
        assert resp.status == 200  # probes come from the node: not a pull

    local = await start(aiohttp_server, mirror_config, server={"allow": ["127.0.0.0/8", "::1"]})
    assert (await answer(session, local))[0] == 200

    proxied = await start(
        aiohttp_server,
        mirror_config,
        server={"allow": ["10.1.0.0/16"], "trusted_proxies": ["127.0.0.1/32"]},
    )
    assert (await answer(session, proxied))[0] == 403  # the proxy itself may not pull
    assert (await answer(session, proxied, headers=forged))[0] == 200
    # The client wrote the left part; only the hop our proxy appended counts.
    spoofed = {"X-Forwarded-For": "10.1.2.3, 192.0.2.7"}
    assert (await answer(session, proxied, headers=spoofed))[0] == 403


async def test_pulls_need_a_user_from_the_htpasswd_file_which_is_reread_when_it_changes(
    aiohttp_server: ServerFactory,
    mirror_config: dict[str, Any],
    session: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    users = tmp_path / "htpasswd"
    htpasswd(users, "alice", "wonderland", "-B")
    mirror = await start(aiohttp_server, mirror_config, auth={"htpasswd": str(users)})

    for auth in (None, ("alice", "wrong"), ("mallory", "wonderland")):
        status, challenge, body = await answer(session, mirror, auth=auth)
        assert (status, challenge, code_of(body)) == (401, 'Basic realm="mirror"', "UNAUTHORIZED")
    assert (await answer(session, mirror, auth=("alice", "wonderland")))[0] == 200
    async with session.get(mirror.make_url("/healthz")) as resp:
        assert resp.status == 200

    htpasswd(users, "bob", "builder", "-B")
    htpasswd(users, "alice", "changed", "-B")

    async def reread() -> bool:
        return (await answer(session, mirror, auth=("bob", "builder")))[0] == 200

    await eventually(reread, within=10, what="bob, added to the file, may pull")
    assert (await answer(session, mirror, auth=("alice", "wonderland")))[0] == 401
    assert (await answer(session, mirror, auth=("alice", "changed")))[0] == 200

    # A line that is not bcrypt on a re-read: refused with an error line, the users stay.
    htpasswd(users, "carol", "plain", "-s")  # {SHA}: not bcrypt
    for _ in range(3):
        assert (await answer(session, mirror, auth=("bob", "builder")))[0] == 200


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("-s", "line 1: the hash of 'alice' is not bcrypt (write it with htpasswd -B)"),
        ("-m", "line 1: the hash of 'alice' is not bcrypt (write it with htpasswd -B)"),
        (None, "no such file or directory"),
    ],
)
def test_an_htpasswd_file_that_is_not_bcrypt_stops_the_start(
    tmp_path: Path, option: str | None, expected: str
) -> None:
    users = tmp_path / "htpasswd"
    if option is not None:
        htpasswd(users, "alice", "wonderland", option)
    config = process_config("http://127.0.0.1:9", tmp_path / "data")
    config["server"] = {"listen": f"127.0.0.1:{free_port()}"}
    config["auth"] = {"htpasswd": str(users)}
    result = serve_expecting_exit(tmp_path / "run", config)
    assert result.returncode == 2
    prefix = f"{users} " if option is not None else f"{users}: "
    assert result.stderr_lines == [
        f"mirror: cannot read the users who may pull (auth.htpasswd): {prefix}{expected}"
    ]


def test_skopeo_pulls_with_credentials_and_is_refused_without(
    registry: Registry,
    skopeo: Skopeo,
    mirror_processes: MirrorProcesses,
    tmp_path: Path,
) -> None:
    users = tmp_path / "htpasswd"
    htpasswd(users, "ci", "s3cret-pull", "-B")
    config = process_config(registry.url, tmp_path / "gated" / "data")
    config["auth"] = {"htpasswd": str(users)}
    mirror = mirror_processes(config=config)
    image: Image = registry.images["docker"]
    direct = skopeo.pull(registry.host, image.ref, tmp_path / "direct")

    def pull(dest: Path, *creds: str) -> Path:
        skopeo.run(
            "copy", "--quiet", "--src-tls-verify=false", f"--tmpdir={skopeo.tmpdir}", *creds,
            f"docker://{mirror.host}/{image.ref}", f"dir:{dest}",
        )  # fmt: skip
        return dest

    assert diff_dirs(direct, pull(tmp_path / "with", "--src-creds=ci:s3cret-pull")) == []
    with pytest.raises(SkopeoError, match=r"unauthorized|authentication required"):
        pull(tmp_path / "without", "--src-no-creds")
    with pytest.raises(SkopeoError, match=r"unauthorized|authentication required"):
        pull(tmp_path / "wrong", "--src-creds=ci:guess")


def status_of(url: str, token: str | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get_content_type()


def test_an_admin_port_of_its_own(mirror_processes: MirrorProcesses, tmp_path: Path) -> None:
    admin_port = free_port()
    config = process_config("http://127.0.0.1:9", tmp_path / "split" / "data")
    config["admin"] = {"token": TOKEN, "listen": f"127.0.0.1:{admin_port}"}
    mirror: MirrorProcess = mirror_processes(config=config)
    pull, admin = mirror.url, f"http://127.0.0.1:{admin_port}"
    json = "application/json"

    assert status_of(f"{pull}/v2/") == (200, json)
    assert status_of(f"{pull}/healthz")[0] == 200
    assert status_of(f"{pull}/admin/stats", TOKEN) == (404, json)
    assert status_of(f"{pull}/metrics") == (404, json)

    assert status_of(f"{admin}/admin/stats", TOKEN) == (200, json)
    assert status_of(f"{admin}/admin/stats") == (401, json)  # the token still applies
    assert status_of(f"{admin}/metrics")[0] == 200
    assert status_of(f"{admin}/healthz")[0] == 200
    assert status_of(f"{admin}/readyz")[0] == 200
    assert status_of(f"{admin}/v2/") == (404, json)
    [banner] = [line for line in mirror.stderr_lines() if "listening on" in line]
    assert f"(admin API, metrics and health checks on 127.0.0.1:{admin_port})" in banner


def test_an_admin_port_in_use_stops_the_start_with_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = process_config("http://127.0.0.1:9", tmp_path / "data")
        config["server"] = {"listen": f"127.0.0.1:{free_port()}"}
        config["admin"] = {"listen": f"127.0.0.1:{port}"}
        result = serve_expecting_exit(tmp_path / "run", config)
    assert result.returncode == 2
    assert result.stderr_lines == [
        f"mirror: cannot listen on 127.0.0.1:{port} (admin.listen): address already in use"
    ]
