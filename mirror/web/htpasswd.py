"""Users who may pull: an htpasswd file of bcrypt hashes, as `htpasswd -B` writes it.

bcrypt is slow on purpose (tens of milliseconds a check) and clients send their credentials
with every request, so each answer is remembered, keyed by a keyed hash of user and password
(never the password itself), until the file changes: a verified password and a repeated wrong
guess cost nothing the next time. Checks run in threads, a few at a time, one per distinct
guess however many requests carry it, and a client address with many recent failures is
refused without a check: a flood of wrong passwords costs a bounded amount of work and does not
queue the checks of other clients behind it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import hmac
import logging
import re
import secrets
from pathlib import Path

import bcrypt

from mirror.errors import StartupError
from mirror.file_state import file_state

log = logging.getLogger("mirror.auth")

# What bcrypt itself accepts: version, a cost from 4 to 31, 22 characters of salt and 31 of hash.
BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
MAX_PASSWORD_BYTES = 72  # bcrypt reads no more; htpasswd -B cuts a longer password there too
RECHECK_AFTER = 1.0  # seconds between looks at whether the file changed
MAX_REMEMBERED = 10_000
CONCURRENT_CHECKS = 4
FAILURE_WINDOW = 60.0  # seconds
MAX_FAILURES = 10  # checks failed from one address within the window, then refused unchecked


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
        if not BCRYPT_HASH.fullmatch(hashed):
            kind = "is not bcrypt" if not hashed.startswith("$2") else "is a broken bcrypt hash"
            raise HtpasswdInvalid(
                f"{path} line {number}: the hash of {user[:64]!r} {kind}"
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
        self._state = file_state(path)
        self._looked_at = 0.0
        self._key = secrets.token_bytes(32)
        # Keyed hash of user and password → the bcrypt hash it was checked against, and
        # whether it matched. Only valid for that hash: a changed file changes the answer.
        self._answers: dict[bytes, tuple[bytes, bool]] = {}
        self._running: dict[bytes, asyncio.Future[bool]] = {}
        self._slots = asyncio.Semaphore(CONCURRENT_CHECKS)
        self._failures: dict[str, collections.deque[float]] = {}
        log.info("%d users may pull (from %s)", len(self._users), path)

    async def check(self, user: str, password: str, client: str = "") -> bool:
        self._reload_if_changed()
        # An unknown user is checked against a stand-in hash of the file's cost, so that the
        # answer takes as long as a wrong password's and does not tell which users exist.
        hashed = self._users.get(user) or f"stand-in {self._cost()}".encode()
        key = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        known = self._answers.get(key)
        if known is not None and known[0] == hashed:
            return known[1] and user in self._users
        now = asyncio.get_running_loop().time()
        if self._failed_lately(client, now) >= MAX_FAILURES:
            return False  # many wrong guesses from there lately: no more bcrypt for them
        running = self._running.get(key)
        if running is None:
            # One check per distinct guess, however many requests carry it; it counts once
            # against the address that made it run.
            running = asyncio.ensure_future(self._bcrypt(password, hashed, client, now))
            self._running[key] = running
            running.add_done_callback(lambda _: self._running.pop(key, None))
        # Shielded: a client that hangs up does not cancel the check others wait for.
        matches = await asyncio.shield(running) and user in self._users
        if len(self._answers) >= MAX_REMEMBERED:
            self._answers.clear()
        self._answers[key] = (hashed, matches)
        return matches

    async def _bcrypt(self, password: str, hashed: bytes, client: str, now: float) -> bool:
        async with self._slots:
            matches = await asyncio.to_thread(
                _checkpw, password.encode()[:MAX_PASSWORD_BYTES], hashed
            )
        if not matches:
            self._failures.setdefault(client, collections.deque()).append(now)
        return matches

    def _failed_lately(self, client: str, now: float) -> int:
        failures = self._failures.get(client)
        if failures is None:
            return 0
        while failures and failures[0] < now - FAILURE_WINDOW:
            failures.popleft()
        if not failures:
            del self._failures[client]  # the table holds only addresses failing now
            return 0
        return len(failures)

    def _cost(self) -> int:
        return max((int(hashed[4:6]) for hashed in self._users.values()), default=5)

    def _reload_if_changed(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._looked_at < RECHECK_AFTER:
            return
        self._looked_at = now
        state = file_state(self._path)
        if state == self._state:
            return
        self._state = state
        try:
            users = parse(self._path.read_text(), self._path)
        except (OSError, UnicodeDecodeError, HtpasswdInvalid) as exc:
            log.error("users not reloaded: %s; the previous users stay", _why(exc))
            return
        self._users, self._answers = users, {}
        log.info("users reloaded: %d may pull (from %s)", len(users), self._path)


def _checkpw(password: bytes, hashed: bytes) -> bool:
    """bcrypt's check (in a worker thread); a stand-in marker is checked against a real hash
    of its cost, made here on first use rather than on the event loop."""
    if hashed.startswith(b"stand-in "):
        bcrypt.checkpw(password, _stand_in(int(hashed.split()[1])))
        return False
    return bool(bcrypt.checkpw(password, hashed))


@functools.cache
def _stand_in(cost: int) -> bytes:
    """A hash of nothing anyone sends, at this cost (made once per cost, about one check)."""
    return bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=cost))


def _why(exc: Exception) -> str:
    if isinstance(exc, OSError):
        return f"{exc.filename or ''}: {(exc.strerror or str(exc)).lower()}".lstrip(": ")
    return str(exc)
