"""TLS on the pull port: real clients pull over it with the site's CA, certificates replaced
on disk (cert-manager, certbot) or announced with SIGHUP are served without a restart, a bad
new pair keeps the old one serving, and what is not TLS 1.2+ is refused at once."""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import ssl
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
import trustme
from support.images import Image
from support.mirror_process import MirrorProcess, process_config, serve_expecting_exit
from support.poll import wait_until
from support.procs import free_port, http_status
from support.registry import Registry
from support.skopeo import Skopeo, diff_dirs
from support.tls import install, tls_config, trusting

UNUSED_UPSTREAM = "http://127.0.0.1:9"  # nothing is pulled in these tests but over skopeo


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def served_certificate(mirror: MirrorProcess, context: ssl.SSLContext) -> bytes:
    """The DER bytes of the certificate a new connection is shown."""
    with (
        socket.create_connection(("127.0.0.1", mirror.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def log_lines(mirror: MirrorProcess, text: str) -> list[str]:
    return [line for line in mirror.stderr_lines() if text in line]


def test_skopeo_pulls_over_tls_trusting_the_sites_ca(
    ca: trustme.CA,
    registry: Registry,
    skopeo: Skopeo,
    mirror_processes: Any,
    tmp_path: Path,
) -> None:
    root = tmp_path / "tls-mirror"
    install(ca, root / "tls")
    mirror = mirror_processes(config=tls_config(registry.url, root), client_tls=trusting(ca))
    image: Image = registry.images["docker"]
    certs = tmp_path / "certs.d"
    certs.mkdir()
    ca.cert_pem.write_to_path(str(certs / "ca.crt"))

    def pull(dest: Path, *options: str) -> Path:
        skopeo.run(
            "copy", "--quiet", "--src-no-creds", f"--tmpdir={skopeo.tmpdir}", *options,
            f"docker://{mirror.host}/{image.ref}", f"dir:{dest}",
        )  # fmt: skip
        return dest

    direct = skopeo.pull(registry.host, image.ref, tmp_path / "direct")
    through = pull(tmp_path / "through-tls", f"--src-cert-dir={certs}")
    assert diff_dirs(direct, through) == []
    # Without the site's CA the client refuses the mirror: it is TLS, verified, for real.
    with pytest.raises(RuntimeError, match="certificate"):
        pull(tmp_path / "untrusted")


def test_replaced_certificates_are_served_without_a_restart(
    ca: trustme.CA, mirror_processes: Any, tmp_path: Path
) -> None:
    root = tmp_path / "rotating"
    first = install(ca, root / "tls")
    client = trusting(ca)
    mirror = mirror_processes(config=tls_config(UNUSED_UPSTREAM, root), client_tls=client)
    assert served_certificate(mirror, client) == first

    # Replaced on disk, as a renewal does: picked up by the watch, no signal.
    second = install(ca, root / "tls")
    wait_until(
        lambda: served_certificate(mirror, client) == second,
        within=15,
        alive=lambda: mirror.running,
        what="the renewed certificate",
    )
    assert log_lines(mirror, "TLS certificate reloaded (the files changed)")

    # Replaced and announced with SIGHUP: reloaded on the signal.
    third = install(ca, root / "tls")
    mirror.send_signal(signal.SIGHUP)
    wait_until(
        lambda: bool(log_lines(mirror, "TLS certificate reloaded (SIGHUP)")),
        within=10,
        alive=lambda: mirror.running,
        what="the SIGHUP reload line",
    )
    assert served_certificate(mirror, client) == third

    # A key that does not belong to the certificate: one error line, the old pair serves on.
    install(ca, root / "tls", key_from=ca.issue_cert("127.0.0.1"))
    mirror.send_signal(signal.SIGHUP)
    wait_until(
        lambda: bool(log_lines(mirror, "TLS certificate not reloaded (SIGHUP)")),
        within=10,
        alive=lambda: mirror.running,
        what="the refused reload's error line",
    )
    assert served_certificate(mirror, client) == third
    assert http_status(f"{mirror.url}/healthz", context=client) == 200
    [refused] = log_lines(mirror, "not reloaded")
    assert " ERROR " in refused and "still serving the previous certificate" in refused


def test_plain_http_and_old_tls_are_refused_at_once(
    ca: trustme.CA, mirror_processes: Any, tmp_path: Path
) -> None:
    root = tmp_path / "strict"
    install(ca, root / "tls")
    mirror = mirror_processes(config=tls_config(UNUSED_UPSTREAM, root), client_tls=trusting(ca))

    # Plain HTTP on the TLS port: the connection is closed, the client is not left hanging.
    with socket.create_connection(("127.0.0.1", mirror.port), timeout=10) as plain:
        started = time.monotonic()
        plain.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert plain.recv(1024) == b""
        assert time.monotonic() - started < 5

    # A client that would settle for TLS 1.1 (and weak ciphers) gets no session.
    old = trusting(ca)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():  # deprecated on purpose: the protocol a server must refuse
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError):
        served_certificate(mirror, old)
    modern = trusting(ca)
    modern.minimum_version = modern.maximum_version = ssl.TLSVersion.TLSv1_2
    assert served_certificate(mirror, modern)
    assert http_status(f"{mirror.url}/healthz", context=trusting(ca)) == 200


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        (
            {"tls_cert": "{root}/missing.pem", "tls_key": "{root}/tls/key.pem"},
            "cannot load the TLS certificate {root}/missing.pem with key {root}/tls/key.pem "
            "(server.tls_cert): no such file or directory",
        ),
        (
            {"tls_cert": "{root}/tls/cert.pem", "tls_key": "{root}/other/key.pem"},
            "cannot load the TLS certificate {root}/tls/cert.pem with key {root}/other/key.pem "
            "(server.tls_cert): key values mismatch",
        ),
        (
            {"tls_cert": "{root}/tls/cert.pem"},
            "config error: server.tls_key: tls_cert and tls_key go together",
        ),
    ],
)
def test_an_unusable_certificate_stops_the_start_with_one_line(
    ca: trustme.CA, tmp_path: Path, server: dict[str, str], expected: str
) -> None:
    install(ca, tmp_path / "tls")
    install(ca, tmp_path / "other")
    config = process_config(UNUSED_UPSTREAM, tmp_path / "data")
    config["server"] = {
        "listen": f"127.0.0.1:{free_port()}",
        **{key: value.format(root=tmp_path) for key, value in server.items()},
    }
    result = serve_expecting_exit(tmp_path / "run", config)
    assert result.returncode == 2
    assert result.stderr_lines == [f"mirror: {expected.format(root=tmp_path)}"]


def blob_size(registry: Registry, repo: str, digest: str) -> int:
    """A blob's size, from a HEAD straight to the registry."""
    conn = http.client.HTTPConnection(registry.host, timeout=30)
    try:
        conn.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        return int(conn.getresponse().headers["Content-Length"])
    finally:
        conn.close()


def slow_get(tls: ssl.SSLSocket, host: str, path: str) -> tuple[int, bytes]:
    """A GET on a kept-alive TLS connection, its body read in small pieces with pauses, so the
    server's writes stall (flow control pauses and resumes them many times)."""
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        piece = tls.recv(1)
        assert piece, "the connection closed before the head"
        head += piece
    status = int(head.split(b" ", 2)[1])
    fields = dict(
        line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line
    )
    length = int(fields.get("Content-Length", fields.get("content-length", "0")))
    body = bytearray()
    while len(body) < length:
        piece = tls.recv(min(16 * 1024, length - len(body)))
        if not piece:
            break  # cut short: the caller sees a short body
        body += piece
        time.sleep(0.0005)  # a slow client: not a wait for anything, the load itself
    return status, bytes(body)


def test_a_slow_client_over_tls_gets_a_cold_and_then_a_stored_blob_whole(
    ca: trustme.CA, registry: Registry, mirror_processes: Any, tmp_path: Path
) -> None:
    """asyncio has no sendfile for TLS; its fallback swaps the connection's protocol and, with
    a client slow enough to pause the writes, left aiohttp's flow control broken: the fill's
    reader (one send per span) and then a stored hit on the same connection were cut with an
    AssertionError in resume_writing."""
    root = tmp_path / "tls-mirror"
    install(ca, root / "tls")
    mirror = mirror_processes(config=tls_config(registry.url, root), client_tls=trusting(ca))
    image: Image = registry.images["docker"]
    # Every blob of the image, largest first, each cold then stored, all on one connection:
    # the stall is a race, so it gets many chances.
    digests = sorted(image.blobs, key=lambda d: -blob_size(registry, image.repo, d))
    context = trusting(ca)
    with (
        socket.create_connection(("127.0.0.1", mirror.port), timeout=20) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        rounds: list[tuple[str, tuple[str, ...]]] = [
            (d, ("cold (a running fill)", "stored (a hit, same connection)")) for d in digests
        ]
        rounds.append((digests[0], ("stored, again",) * 5))
        for digest, whens in rounds:
            for when in whens:
                status, body = slow_get(tls, mirror.host, f"/v2/{image.repo}/blobs/{digest}")
                assert status == 200, f"{digest} {when}"
                got = "sha256:" + hashlib.sha256(body).hexdigest()
                assert got == digest, f"{digest} {when}: cut short ({len(body)} bytes)"
    assert not log_lines(mirror, "unhandled error"), mirror.output()[-3000:]
