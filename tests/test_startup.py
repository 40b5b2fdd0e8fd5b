"""`mirror serve` starting, and refusing to: every start-up failure is one line on stderr naming
the cause and the setting, exit status 2, no banner and no traceback; the banner is logged once
the socket listens (as JSON with `log_format = "json"`); SIGHUP does not stop the server."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes.ops import Cli
from support.mirror_process import (
    MirrorProcesses,
    ServeResult,
    serve_expecting_exit,
    toml_text,
)
from support.poll import wait_until
from support.procs import free_port, http_status, subprocess_env

from mirror.stores.schema import MIGRATIONS

NEWER = len(MIGRATIONS) + 98
# Nothing is contacted at start-up: an upstream that does not exist is fine.
UPSTREAM = "http://127.0.0.1:9"


def config_doc(data: Path, listen: str | None = None, **server: str) -> dict[str, Any]:
    return {
        "server": {"listen": listen or f"127.0.0.1:{free_port()}", **server},
        "storage": {"path": str(data)},
        "upstreams": [{"name": "docker.io", "url": UPSTREAM}],
    }


def assert_one_line(result: ServeResult, line: str) -> None:
    assert result.returncode == 2, result
    assert result.stderr_lines == [line], result
    assert result.stdout == "", result  # no banner
    assert "Traceback" not in result.stderr


def serve(tmp_path: Path, config: dict[str, Any], *args: str) -> ServeResult:
    return serve_expecting_exit(tmp_path / "run", config, *args)


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use(tmp_path: Path, busy_port: int) -> None:
    result = serve(tmp_path, config_doc(tmp_path / "data", f"127.0.0.1:{busy_port}"))
    assert_one_line(
        result,
        f"mirror: cannot listen on 127.0.0.1:{busy_port} (server.listen): address already in use",
    )


def test_port_in_use_names_the_option_that_set_it(tmp_path: Path, busy_port: int) -> None:
    data = tmp_path / "data"
    result = serve(tmp_path, config_doc(data), "--listen", f"127.0.0.1:{busy_port}")
    assert_one_line(
        result, f"mirror: cannot listen on 127.0.0.1:{busy_port} (--listen): address already in use"
    )
    # The folder it opened before binding was closed and let go.
    with (data / "lock").open("r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_address_not_available(tmp_path: Path) -> None:
    nonlocal_bind = Path("/proc/sys/net/ipv4/ip_nonlocal_bind")
    if nonlocal_bind.exists() and nonlocal_bind.read_text().strip() != "0":
        pytest.skip("ip_nonlocal_bind is on: any address can be bound")
    listen = f"192.0.2.1:{free_port()}"  # TEST-NET-1: on no interface of this machine
    result = serve(tmp_path, config_doc(tmp_path / "data", listen))
    assert_one_line(
        result,
        f"mirror: cannot listen on {listen} (server.listen): cannot assign requested address",
    )


def test_data_path_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a folder")
    result = serve(tmp_path, config_doc(data))
    assert_one_line(
        result, f"mirror: cannot use data folder {data} (storage.path): it is a file, not a folder"
    )
    assert data.read_text() == "not a folder"


def test_data_folder_cannot_be_created_under_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    data = tmp_path / "file" / "data"
    result = serve(tmp_path, config_doc(tmp_path / "ignored"), "--data", str(data))
    assert_one_line(
        result, f"mirror: cannot use data folder {data} (--data): cannot create it: not a directory"
    )


@pytest.fixture
def read_only_mount(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs: the tests run as root, for whom permission bits do not stop writes."""
    mount = tmp_path / "read-only"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_data_folder_on_a_read_only_file_system(tmp_path: Path, read_only_mount: Path) -> None:
    result = serve(tmp_path, config_doc(read_only_mount))
    assert_one_line(
        result,
        f"mirror: cannot use data folder {read_only_mount} (storage.path): "
        f"{read_only_mount / 'lock'}: read-only file system",
    )
    missing = read_only_mount / "data"
    result = serve(tmp_path, config_doc(missing))
    assert_one_line(
        result,
        f"mirror: cannot use data folder {missing} (storage.path): "
        "cannot create it: read-only file system",
    )


def newer_database(data: Path) -> Path:
    """Today's tables, one more, and a version ahead of today's migrations: what a newer
    mirror would leave behind (and what this one could serve, misreading it)."""
    data.mkdir()
    path = data / "mirror.db"
    db = sqlite3.connect(path)
    db.executescript(
        f"PRAGMA journal_mode=WAL; {''.join(MIGRATIONS)}; CREATE TABLE future (x);"
        f"PRAGMA user_version = {NEWER};"
    )
    db.close()
    return path


def schema_of(path: Path) -> tuple[int, list[str]]:
    """The version and every table and index."""
    db = sqlite3.connect(path)
    try:
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = [str(row[0]) for row in db.execute("SELECT name, sql FROM sqlite_master")]
    finally:
        db.close()
    return version, sorted(tables)


def test_a_database_from_a_newer_mirror_is_refused(tmp_path: Path) -> None:
    database = newer_database(tmp_path / "data")
    before = schema_of(database)
    # Without the check it would start (and run until stopped): a short timeout.
    result = serve_expecting_exit(tmp_path / "run", config_doc(tmp_path / "data"), timeout=10)
    assert_one_line(
        result,
        f"mirror: cannot open {database} (storage.path): its schema version {NEWER} is newer "
        f"than this mirror's ({len(MIGRATIONS)}); run the newer mirror, or move the folder aside",
    )
    assert schema_of(database) == before  # not migrated, not written


def test_an_index_that_is_not_a_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "mirror.db").write_bytes(bytes(range(256)) * 32)
    result = serve(tmp_path, config_doc(data))
    assert_one_line(
        result,
        f"mirror: cannot use data folder {data} (storage.path): SQLite: file is not a database",
    )


async def test_an_offline_command_refuses_a_newer_database(tmp_path: Path, cli: Cli) -> None:
    database = newer_database(tmp_path / "data")
    before = schema_of(database)
    result = await cli("stats", "--data", str(tmp_path / "data"))
    assert result.returncode == 2, result
    assert result.stderr.splitlines() == [
        f"mirror stats: cannot open {database} (--data): its schema version {NEWER} is newer "
        f"than this mirror's ({len(MIGRATIONS)}); run the newer mirror, or move the folder aside"
    ]
    assert schema_of(database) == before


def test_a_locked_folder(tmp_path: Path) -> None:
    """Whoever holds the lock (here this test, as PID 4242) is named."""
    data = tmp_path / "data"
    data.mkdir()
    with (data / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242\n")
        lock.flush()
        result = serve(tmp_path, config_doc(data))
    assert_one_line(
        result,
        f"mirror: cannot use data folder {data} (storage.path): in use by another mirror process "
        f"(pid 4242, lock {data / 'lock'})",
    )
    assert list(data.iterdir()) == [data / "lock"]  # nothing else was created or swept


# -- a start that succeeds ----------------------------------------------------------------


def test_the_banner_is_logged_once_the_server_listens(tmp_path: Path) -> None:
    """The moment the banner is in the log, the port takes connections."""
    port = free_port()
    root = tmp_path / "run"
    root.mkdir()
    config = root / "mirror.toml"
    config.write_text(toml_text(config_doc(tmp_path / "data", f"127.0.0.1:{port}")))
    err_path = root / "stderr"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mirror", "serve", "--config", str(config)],
            cwd=root,
            env=subprocess_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
        )
    try:
        wait_until(
            lambda: "listening on" in err_path.read_text(),
            within=20,
            interval=0.002,
            alive=lambda: proc.poll() is None,
            what="the banner",
        )
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # refused, if the banner came before the bind
        lines = err_path.read_text().splitlines()
        assert lines == [
            f"{lines[0].split(' INFO ')[0]} INFO mirror.serve: mirror 0.1.0 listening on "
            f"127.0.0.1:{port}, data in {tmp_path / 'data'}, upstreams: docker.io → {UPSTREAM}"
        ], lines
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert out == b""  # nothing on stdout: the banner is a log line
    assert err_path.read_text().splitlines()[-1].endswith("INFO mirror.serve: stopped")


def test_json_banner_sighup_ignored_and_shutdown_logged(
    tmp_path: Path, mirror_processes: MirrorProcesses
) -> None:
    data = tmp_path / "data"
    config = {
        "server": {"log_format": "json"},
        "storage": {"path": str(data)},
        "upstreams": [{"name": "docker.io", "url": UPSTREAM}],
    }
    proc = mirror_processes(config=config)

    def entries() -> list[dict[str, Any]]:
        return [json.loads(line) for line in proc.stderr_lines()]  # every line is JSON

    [banner] = [e for e in entries() if e["logger"] == "mirror.serve"]
    assert banner["level"] == "info"
    assert banner["message"] == (
        f"mirror 0.1.0 listening on {proc.host}, data in {data}, upstreams: docker.io → {UPSTREAM}"
    )
    assert banner["listen"] == proc.host and banner["data"] == str(data)
    assert banner["version"] == "0.1.0" and banner["pid"] == proc.pid
    assert banner["upstreams"] == {"docker.io": UPSTREAM}

    for sent in (1, 2):
        proc.send_signal(signal.SIGHUP)
        wait_until(
            lambda: sum("SIGHUP" in e["message"] for e in entries()) == sent,  # noqa: B023
            within=5,
            alive=lambda: proc.running,
            what=f"SIGHUP line {sent}",
        )
    assert proc.running and http_status(f"{proc.url}/healthz") == 200
    [hup, *_] = [e for e in entries() if "SIGHUP" in e["message"]]
    assert hup["level"] == "warning" and hup["logger"] == "mirror.serve"
    assert "ignored" in hup["message"]

    assert proc.stop() == 0
    assert [e["message"] for e in entries()][-1] == "stopped"
    assert not [e for e in entries() if e["level"] in ("error", "critical")]
    assert os.path.exists(data / "lock")
