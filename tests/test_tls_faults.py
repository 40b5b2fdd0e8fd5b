"""TLS reloads that race a renewal keep a usable pair."""

from __future__ import annotations

import socket
import ssl
import threading
from pathlib import Path

import pytest
import trustme

from mirror.cli import tls


def write_pair(
    folder: Path, leaf: trustme.LeafCert, key_from: trustme.LeafCert | None = None
) -> None:
    (folder / "cert.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    (folder / "key.pem").write_bytes((key_from or leaf).private_key_pem.bytes())


def handshake_ok(context: ssl.SSLContext, ca: trustme.CA) -> bool:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()

    def serve() -> None:
        conn, _ = server.accept()
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (ssl.SSLError, OSError):
            conn.close()

    thread = threading.Thread(target=serve)
    thread.start()
    client = ssl.create_default_context()
    ca.configure_trust(client)
    try:
        with client.wrap_socket(
            socket.create_connection(server.getsockname(), timeout=5), server_hostname="127.0.0.1"
        ):
            return True
    except (ssl.SSLError, OSError):
        return False
    finally:
        thread.join(5)
        server.close()


def test_a_pair_that_changes_between_the_scratch_load_and_the_live_load_keeps_the_old_pair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """reload() reads the files twice: once into a scratch context, once into the live one. A
    renewal tool that swaps cert and key one at a time (certbot's links) between those two reads
    makes the live load fail half-way: OpenSSL has then put the new certificate in the live
    context and dropped its key, and every new handshake fails, while the log says the previous
    certificate still serves. (Forced here by swapping in the window; in production a race.)"""
    ca = trustme.CA()
    first, second = ca.issue_cert("127.0.0.1"), ca.issue_cert("127.0.0.1")
    write_pair(tmp_path, first)
    certificate = tls.ServerCertificate(tmp_path / "cert.pem", tmp_path / "key.pem")
    assert handshake_ok(certificate.context, ca)

    write_pair(tmp_path, second)  # a whole new pair: the scratch load accepts it
    real_new_context = tls.new_context

    def scratch_then_half_swap(cert: Path, key: Path) -> ssl.SSLContext:
        context = real_new_context(cert, key)
        write_pair(tmp_path, ca.issue_cert("127.0.0.1"), key_from=second)  # cert swapped first
        return context

    monkeypatch.setattr(tls, "new_context", scratch_then_half_swap)
    certificate.reload("SIGHUP")
    assert handshake_ok(certificate.context, ca), "the live context was left without a usable pair"
