"""A fake Docker Hub on real loopback sockets: registry, token server and blob CDN.

Three aiohttp servers on random ports, each recording every request it sees, so that tests can
assert what the mirror asked upstream ("the CDN was asked once", "no Authorization went to the
CDN") instead of mocking the mirror's internals. `faults` switches inject the failures a real
upstream shows: resets mid-body, wrong bytes, slow bytes, 5xx, 429, an auth server that is down.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Middleware

from .content import Content, FakeImage, make_blob
from .faults import GATE_TIMEOUT, Faults, send_blob
from .oci import OCI_INDEX, OCI_MANIFEST, accepted_types, error, sha256_digest

ServerName = Literal["registry", "token", "cdn"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SERVICE = "registry.docker.io"
RATE_LIMIT = 100
RATE_WINDOW = "w=21600"
FAILED = 0

_BLOB_OR_MANIFEST = re.compile(r"^(?P<name>.+?)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_TAGS_LIST = re.compile(r"^(?P<name>.+)/tags/list$")


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    server: ServerName
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    # dockerd sends one Accept line per media type; a plain dict would keep only one of them.
    accept: tuple[str, ...]
    authorization: str | None
    # Filled in when the handler ends: None while in flight (e.g. held by `blob_gate`),
    # FAILED when it raised (typically: the mirror hung up while the body was being sent).
    status: int | None = None

    @property
    def basic_auth(self) -> bool:
        return self.authorization is not None and self.authorization.startswith("Basic ")


class FakeHub:
    """`async with FakeHub() as hub:`; add content with the sync helpers, then point a mirror
    at `hub.url`."""

    make_blob = staticmethod(make_blob)

    def __init__(self) -> None:
        self.content = Content()
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self.redirect_blobs = True
        self.ratelimit_remaining = RATE_LIMIT
        self._private: dict[str, tuple[str, str]] = {}
        self._tokens: dict[str, frozenset[str]] = {}
        self._runners: dict[ServerName, web.AppRunner] = {}
        self._ports: dict[ServerName, int] = {}

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> FakeHub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        for server in ("registry", "token", "cdn"):
            await self._start(server)

    async def close(self) -> None:
        for server in list(self._runners):
            await self._runners.pop(server).cleanup()

    async def stop_registry(self) -> None:
        """Close the registry's socket and its connections: the mirror gets connection refused."""
        await self._runners.pop("registry").cleanup()

    async def start_registry(self) -> None:
        await self._start("registry", self._ports["registry"])

    async def stop_token_server(self) -> None:
        """Close the token server's socket: the mirror gets connection refused from it."""
        await self._runners.pop("token").cleanup()

    async def start_token_server(self) -> None:
        await self._start("token", self._ports["token"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._ports['registry']}"

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self._ports['token']}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self._ports['cdn']}"

    async def _start(self, server: ServerName, port: int = 0) -> None:
        app = web.Application(middlewares=[self._recorder(server)])
        if server == "registry":
            app.router.add_route("*", "/v2/{tail:.*}", self._registry)
        elif server == "token":
            app.router.add_get("/token", self._token)
        else:
            app.router.add_route("*", "/blobs/{digest}", self._cdn)
        # A short shutdown: a handler held by a gate or a delay must not stall close().
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await runner.setup()
        # Re-binding the same port right after close works because asyncio sets SO_REUSEADDR.
        await web.TCPSite(runner, "127.0.0.1", port).start()
        self._runners[server] = runner
        self._ports[server] = runner.addresses[0][1]

    # -- content ---------------------------------------------------------------------------

    def add_blob(self, repo: str, data: bytes) -> str:
        return self.content.add_blob(repo, data)

    def add_manifest(self, repo: str, body: bytes, media_type: str, tag: str | None = None) -> str:
        return self.content.add_manifest(repo, body, media_type, tag)

    def set_tag(self, repo: str, tag: str, digest: str) -> None:
        self.content.set_tag(repo, tag, digest)

    def delete_tag(self, repo: str, tag: str) -> None:
        self.content.delete_tag(repo, tag)

    def add_image(
        self, repo: str, tag: str, layers: list[bytes], media_type: str = OCI_MANIFEST
    ) -> FakeImage:
        return self.content.add_image(repo, tag, layers, media_type)

    def add_index(
        self, repo: str, tag: str, manifests: list[FakeImage], media_type: str = OCI_INDEX
    ) -> str:
        return self.content.add_index(repo, tag, manifests, media_type)

    def require_credentials(self, repo: str, username: str, password: str) -> None:
        """Make `repo` private: its pull scope is granted only to matching HTTP Basic auth."""
        self._private[repo] = (username, password)

    def revoke_tokens(self) -> None:
        """Forget every token issued, so the next registry request needs a new token dance."""
        self._tokens.clear()

    # -- recording -------------------------------------------------------------------------

    def records(
        self,
        server: ServerName | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        path_endswith: str | None = None,
        status: int | None = None,
    ) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (server is None or r.server == server)
            and (method is None or r.method == method)
            and (path_contains is None or path_contains in r.path)
            and (path_endswith is None or r.path.endswith(path_endswith))
            and (status is None or r.status == status)
        ]

    def count(
        self,
        server: ServerName | None = None,
        method: str | None = None,
        path_contains: str | None = None,
        path_endswith: str | None = None,
        status: int | None = None,
    ) -> int:
        return len(self.records(server, method, path_contains, path_endswith, status))

    def reset_counts(self) -> None:
        self.requests.clear()

    def _recorder(self, server: ServerName) -> Middleware:
        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            entry = RecordedRequest(
                server=server,
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                accept=tuple(request.headers.getall("Accept", ())),
                authorization=request.headers.get("Authorization"),
            )
            # Appended before handling, so a test can see a request that is still in flight.
            self.requests.append(entry)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                self._finish(entry, exc.status)
                raise
            except BaseException:
                self._finish(entry, FAILED)
                raise
            self._finish(entry, response.status)
            return response

        return record

    def _finish(self, entry: RecordedRequest, status: int) -> None:
        for i in range(len(self.requests) - 1, -1, -1):
            if self.requests[i] is entry:
                self.requests[i] = replace(entry, status=status)
                return

    # -- registry --------------------------------------------------------------------------

    async def _registry(self, request: web.Request) -> web.StreamResponse:
        if self.faults.rate_limited is not None:
            return error(
                429,
                "TOOMANYREQUESTS",
                "You have reached your pull rate limit.",
                {"Retry-After": str(self.faults.rate_limited)},
            )
        if self.faults.registry_status is not None:
            status = self.faults.registry_status
            return error(status, "UNAVAILABLE" if status == 503 else "UNKNOWN", "injected fault")
        tail = request.match_info["tail"]
        if tail == "":
            return self._authorize(request, None) or web.json_response(
                {}, headers={"Docker-Distribution-API-Version": "registry/2.0"}
            )
        if match := _TAGS_LIST.match(tail):
            name, kind, ref = match["name"], "tags", ""
        elif match := _BLOB_OR_MANIFEST.match(tail):
            name, kind, ref = match["name"], match["kind"], match["ref"]
        else:
            return error(404, "NAME_UNKNOWN", "no such route")
        if denied := self._authorize(request, name):
            return denied
        if request.method not in ("GET", "HEAD"):
            return error(405, "UNSUPPORTED", "the fake hub only serves pulls")
        if name not in self.content.repos:
            return error(404, "NAME_UNKNOWN", f"repository name not known: {name}")
        if kind == "tags":
            if self.faults.tags_delay:
                await asyncio.sleep(self.faults.tags_delay)
            return self._tags_list(request, name)
        if kind == "manifests":
            return await self._manifest(request, name, ref)
        if ref not in self.content.repo(name).blobs:
            return error(404, "BLOB_UNKNOWN", f"blob unknown to registry: {ref}")
        if not self.redirect_blobs:
            return await send_blob(
                request, self._blob(ref), self.faults, {"Docker-Content-Digest": ref}
            )
        location = f"{self.cdn_url}/blobs/{ref}?sig={secrets.token_hex(8)}"
        return web.Response(status=307, headers={"Location": location})

    def _authorize(self, request: web.Request, name: str | None) -> web.Response | None:
        """None if the Bearer token covers `name` (any valid token for /v2/), else a 401."""
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        granted = self._tokens.get(token) if scheme == "Bearer" else None
        if self.faults.reject_tokens and granted is not None:
            granted = None
        elif granted is not None and (name is None or name in granted):
            return None
        challenge = f'Bearer realm="{self.token_url}/token",service="{SERVICE}"'
        if name is not None:
            challenge += f',scope="repository:{name}:pull"'
        if self.faults.reject_tokens and scheme == "Bearer":
            challenge += ',error="invalid_token"'
        elif granted is not None:
            challenge += ',error="insufficient_scope"'
        return error(
            401,
            "UNAUTHORIZED",
            "authentication required",
            {"WWW-Authenticate": challenge},
        )

    async def _manifest(self, request: web.Request, name: str, ref: str) -> web.Response:
        if self.faults.manifest_delay:
            await asyncio.sleep(self.faults.manifest_delay)
        if self.faults.manifest_gate is not None:
            await asyncio.wait_for(self.faults.manifest_gate.wait(), GATE_TIMEOUT)
        repo = self.content.repo(name)
        digest = ref if ref.startswith("sha256:") else repo.tags.get(ref)
        stored = repo.manifests.get(digest) if digest is not None else None
        if digest is None or stored is None:
            return error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {ref}")
        accept = accepted_types(tuple(request.headers.getall("Accept", ())))
        # A simplification of content negotiation: no conversion, just "not found".
        if accept and stored.media_type not in accept and "*/*" not in accept:
            return error(404, "MANIFEST_UNKNOWN", "no manifest of an accepted media type")
        if request.method == "GET":
            # Docker Hub's rule: a manifest GET is a pull and spends quota, a HEAD does not.
            self.ratelimit_remaining = max(0, self.ratelimit_remaining - 1)
        headers = {
            "Docker-Content-Digest": digest,
            "Content-Type": stored.media_type,
            "ratelimit-limit": f"{RATE_LIMIT};{RATE_WINDOW}",
            "ratelimit-remaining": f"{self.ratelimit_remaining};{RATE_WINDOW}",
        }
        if self.faults.manifest_digest_header == "body":
            headers["Docker-Content-Digest"] = sha256_digest(stored.body)
        elif self.faults.manifest_digest_header == "absent":
            del headers["Docker-Content-Digest"]
        # aiohttp keeps Content-Length and drops the body for HEAD.
        return web.Response(body=stored.body, headers=headers)

    def _tags_list(self, request: web.Request, name: str) -> web.Response:
        tags = sorted(self.content.repo(name).tags)
        last = request.query.get("last")
        if last is not None:
            tags = [t for t in tags if t > last]
        headers = {}
        if "n" in request.query:
            n = int(request.query["n"])
            if n < len(tags):
                tags = tags[:n]
                headers["Link"] = f'</v2/{name}/tags/list?n={n}&last={tags[-1]}>; rel="next"'
        return web.json_response({"name": name, "tags": tags}, headers=headers)

    # -- token server ----------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        if self.faults.token_delay:
            await asyncio.sleep(self.faults.token_delay)
        if self.faults.token_down:
            return error(503, "UNAVAILABLE", "auth server down")
        if self.faults.token_status is not None:
            status = self.faults.token_status
            return error(status, "DENIED" if status < 500 else "UNKNOWN", "injected token fault")
        credentials = _basic_credentials(request.headers.get("Authorization"))
        granted: set[str] = set()
        for scope in " ".join(request.query.getall("scope", [])).split():
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            if kind != "repository" or "pull" not in actions.split(","):
                continue
            owner = self._private.get(name)
            # Like Docker Hub: a token is still issued, just without the scope it may not have.
            if owner is None or owner == credentials:
                granted.add(name)
        token = secrets.token_urlsafe(24)
        self._tokens[token] = frozenset(granted)
        issued_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return web.json_response(
            {"token": token, "access_token": token, "expires_in": 300, "issued_at": issued_at}
        )

    # -- blobs (CDN, or the registry itself when not redirecting) --------------------------

    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        digest = request.match_info["digest"]
        if request.method not in ("GET", "HEAD"):
            return web.Response(status=405)
        if digest not in self.content.blob_bytes:
            return web.Response(status=404, text="no such object")
        return await send_blob(request, self._blob(digest), self.faults, {})

    def _blob(self, digest: str) -> bytes:
        return self.content.blob_bytes[digest]


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if header is None or not header.startswith("Basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password
