"""A Docker-style token server: RS256 JWTs with an `x5c` header (docker-registry `auth: token`).

distribution 2.8 checks a token's signature with the key of the first certificate in `x5c`, after
verifying that certificate against `rootcertbundle`; here the certificate is self-signed and is the
bundle. The server runs in a thread with an event loop of its own, so that blocking subprocess
calls (skopeo) in the test can use it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

SERVICE = "registry.docker.io"
ISSUER = "mirror-test-token-issuer"
TOKEN_LIFETIME = 300
START_TIMEOUT = 10.0


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Signer:
    """An RSA key and a self-signed certificate for it; signs JWTs carrying the certificate."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def issued_at(self) -> int:
        """When the tokens it signs say they were issued (a subclass may sign stale ones)."""
        return int(time.time())

    def token(self, subject: str, access: list[dict[str, object]]) -> str:
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode("ascii")]}
        now = self.issued_at()
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "aud": SERVICE,
            "exp": now + TOKEN_LIFETIME,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = ".".join(
            b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """One request to the token endpoint, as the server saw it."""

    basic: tuple[str, str] | None  # (user, password) of a Basic Authorization header
    other_auth: str | None  # any Authorization header that is not valid Basic
    scopes: tuple[str, ...]
    service: str | None
    status: int


@dataclass
class Policy:
    """Who gets what. Users get pull and push; anonymous clients pull only, when allowed."""

    users: dict[str, str] = field(default_factory=dict)
    anonymous_pull: bool = True


def parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def grant(scopes: tuple[str, ...], actions: set[str]) -> list[dict[str, object]]:
    access: list[dict[str, object]] = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, wanted = rest.rpartition(":")
        if kind != "repository" or not name:
            continue
        allowed = [a for a in wanted.split(",") if a in actions]
        if allowed:
            access.append({"type": "repository", "name": name, "actions": allowed})
    return access


class TokenServer:
    """GET /token?service=…&scope=… on 127.0.0.1, answering as `policy` says; records requests."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.policy = Policy()
        self.requests: list[TokenRequest] = []
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def reset(self, policy: Policy) -> None:
        with self._lock:
            self.policy = policy
            self.requests = []

    def seen(self) -> list[TokenRequest]:
        with self._lock:
            return list(self.requests)

    async def handle(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization")
        basic = parse_basic(header)
        scopes = tuple(request.query.getall("scope", []))
        with self._lock:
            policy = self.policy
        if header is not None:
            ok = basic is not None and policy.users.get(basic[0]) == basic[1]
            actions = {"pull", "push"} if ok else set()
            subject = basic[0] if basic else ""
        else:
            ok = policy.anonymous_pull
            actions = {"pull"} if ok else set()
            subject = ""
        status = 200 if ok else 401
        with self._lock:
            self.requests.append(
                TokenRequest(
                    basic=basic,
                    other_auth=header if header is not None and basic is None else None,
                    scopes=scopes,
                    service=request.query.get("service"),
                    status=status,
                )
            )
        if not ok:
            body = {"details": "incorrect username or password"}
            return web.json_response(
                body, status=401, headers={"WWW-Authenticate": 'Basic realm="t"'}
            )
        token = self.signer.token(subject, grant(scopes, actions))
        issued = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response(
            {
                "token": token,
                "access_token": token,
                "expires_in": TOKEN_LIFETIME,
                "issued_at": issued,
            }
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="token-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise TimeoutError("token server did not start")
        if self._error is not None:
            raise RuntimeError(f"token server failed: {self._error}") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.create_server(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)


def write_bundle(signer: Signer, path: Path) -> Path:
    path.write_bytes(signer.cert_pem())
    return path
