"""The listening socket's TLS: the certificate loaded at start, and reloaded while serving.

cert-manager and certbot replace certificate files in place. The one SSLContext the server
was started with is reloaded in place (new handshakes get the new pair; open connections keep
theirs), on SIGHUP and when either file changes on disk. A new pair is first loaded into a
scratch context: a broken or mismatched pair is reported and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mirror.errors import StartupError
from mirror.file_state import FileState, file_state

log = logging.getLogger("mirror.tls")

WATCH_INTERVAL = 2.0  # seconds between looks at the files (two stat calls)

PairState = tuple[FileState, FileState]


def new_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with this pair: TLS 1.2 and newer only, the library's cipher choice."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context


class ServerCertificate:
    """Owns the context the site listens with, and keeps it current."""

    def __init__(self, cert: Path, key: Path) -> None:
        self._cert, self._key = cert, key
        self._seen = self._state()
        try:
            self.context = new_context(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise StartupError(
                f"cannot load the TLS certificate {cert} with key {key}",
                "server.tls_cert",
                _reason(exc),
            ) from None
        log.info("TLS certificate loaded from %s (sha256 %s)", cert, self._fingerprint())

    def reload(self, why: str) -> bool:
        """Load the pair again; False (and an error line) when the files on disk are unusable."""
        self._seen = self._state()
        try:
            # The files are read once, into a private copy that both loads read: a renewal that
            # swaps them between a scratch load and the live one (certbot replaces its links
            # one at a time) would leave the live context with a certificate and no key.
            with _snapshot(self._cert, self._key) as (cert, key):
                new_context(cert, key)  # a scratch load: the live context stays whole
                self.context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            log.error(
                "TLS certificate not reloaded (%s): %s and %s do not load: %s; "
                "still serving the previous certificate",
                why,
                self._cert,
                self._key,
                _reason(exc),
            )
            return False
        log.info(
            "TLS certificate reloaded (%s) from %s (sha256 %s)",
            why,
            self._cert,
            self._fingerprint(),
        )
        return True

    async def watch(self, interval: float = WATCH_INTERVAL) -> None:
        """Reload once either file's modification time, size or inode changed and then held
        still for one interval: certbot swaps its links one at a time, and a certificate
        read beside the old key would be refused with an error line for nothing. (A renamed
        symlink, as in cert-manager's secret volumes, changes what stat follows.)"""
        last = self._seen
        while True:
            await asyncio.sleep(interval)
            now = self._state()
            if now != self._seen and now == last:
                self.reload("the files changed")
            last = now

    def _state(self) -> PairState:
        return file_state(self._cert), file_state(self._key)

    def _fingerprint(self) -> str:
        """Of the certificate file as read now: enough for an operator to tell two apart."""
        with contextlib.suppress(OSError):
            return hashlib.sha256(self._cert.read_bytes()).hexdigest()[:16]
        return "unreadable"


@contextlib.contextmanager
def _snapshot(cert: Path, key: Path) -> Iterator[tuple[Path, Path]]:
    """The two files as read now, copied into a folder only this user can read (the key is
    secret), removed right after."""
    contents = cert.read_bytes(), key.read_bytes()
    with tempfile.TemporaryDirectory(prefix="mirror-tls-") as folder:  # created 0700
        paths = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        for path, content in zip(paths, contents, strict=True):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(content)
        yield paths


def _reason(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return exc.reason.lower().replace("_", " ") if exc.reason else str(exc)
    return (exc.strerror or str(exc)).lower()
