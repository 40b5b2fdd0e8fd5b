"""Users who may pull: an htpasswd file of bcrypt hashes, as `htpasswd -B` writes it.

bcrypt is slow on purpose (tens of milliseconds a check) and clients send their credentials
with every request, so a password once verified is remembered, keyed by a keyed hash of it
(never the password itself), until the file changes. Checks run in a thread and at most a
few at a time, so wrong passwords cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import secrets
from pathlib import Path

import bcrypt

from mirror.errors import StartupError

log = logging.getLogger("mirror.auth")

BCRYPT_PREFIXES = ("$2y$", "$2b$", "$2a$")
RECHECK_AFTER = 1.0  # seconds between looks at whether the file changed
MAX_REMEMBERED = 10_000
CONCURRENT_CHECKS = 4
# Checked when the user is unknown, so an unknown user costs what a wrong password costs.
_DUMMY_HASH = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=5))


class HtpasswdInvalid(ValueError):
    """A line that is not `user:bcrypt-hash`; the message names the file and the line."""


def parse(text: str, path: Path) -> dict[str, bytes]:
    users: dict[str, bytes] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon or not user or not hashed:
            raise HtpasswdInvalid(f"{path} line {number}: expected user:hash")
        if not hashed.startswith(BCRYPT_PREFIXES):
            raise HtpasswdInvalid(
                f"{path} line {number}: the hash of {user[:64]!r} is not bcrypt"
                " (write it with htpasswd -B)"
            )
        users[user] = hashed.encode()
    return users


class Htpasswd:
    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            self._users = parse(path.read_text(), path)
        except (OSError, UnicodeDecodeError, HtpasswdInvalid) as exc:
            raise StartupError(
                "cannot read the users who may pull", "auth.htpasswd", _why(exc)
            ) from None
        self._state = _stat(path)
        self._looked_at = 0.0
        self._key = secrets.token_bytes(32)
        self._verified: dict[bytes, bytes] = {}  # keyed hash of user and password → bcrypt hash
        self._checking = asyncio.Semaphore(CONCURRENT_CHECKS)
        log.info("%d users may pull (from %s)", len(self._users), path)

    async def check(self, user: str, password: str) -> bool:
        self._reload_if_changed()
        hashed = self._users.get(user)
        secret = f"{user}\0{password}".encode()
        remembered = hmac.new(self._key, secret, hashlib.sha256).digest()
        if hashed is not None and self._verified.get(remembered) == hashed:
            return True
        async with self._checking:
            matches = await asyncio.to_thread(
                bcrypt.checkpw, password.encode(), hashed or _DUMMY_HASH
            )
        if not matches or hashed is None:
            return False
        if len(self._verified) >= MAX_REMEMBERED:
            self._verified.clear()
        self._verified[remembered] = hashed
        return True

    def _reload_if_changed(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._looked_at < RECHECK_AFTER:
            return
        self._looked_at = now
        state = _stat(self._path)
        if state == self._state:
            return
        self._state = state
        try:
            users = parse(self._path.read_text(), self._path)
        except (OSError, UnicodeDecodeError, HtpasswdInvalid) as exc:
            log.error("users not reloaded: %s; the previous users stay", _why(exc))
            return
        self._users, self._verified = users, {}
        log.info("users reloaded: %d may pull (from %s)", len(users), self._path)


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {(exc.strerror or str(exc)).lower()}".lstrip(": ")
    return str(exc)
