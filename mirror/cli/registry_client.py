"""The registry API of a running mirror, as `lock` and `export` read it (urllib, blocking)."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.client import HTTPResponse
from typing import Any

from mirror.errors import OperationError
from mirror.media_types import ALL_MANIFEST_TYPES
from mirror.upkeep.lockfile import ImageRef

TIMEOUT = 300.0  # one read: a blob the mirror fetches from far away may start slowly
MANIFEST_LIMIT = 4 * 1024 * 1024  # distribution's own limit on a manifest


@dataclass(frozen=True, slots=True)
class Manifest:
    digest: str
    media_type: str
    body: bytes

    def document(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.body)
        except ValueError as exc:
            raise OperationError(f"manifest {self.digest} is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise OperationError(f"manifest {self.digest} is not a JSON object")
        return parsed


class RegistryClient:
    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")

    def _open(self, path: str, headers: dict[str, str], what: str) -> HTTPResponse:
        request = urllib.request.Request(self.server + path, headers=headers)
        try:
            response: HTTPResponse = urllib.request.urlopen(request, timeout=TIMEOUT)
        except urllib.error.HTTPError as exc:
            raise OperationError(f"{what}: the mirror answered {exc.code}") from None
        except urllib.error.URLError as exc:
            raise OperationError(f"cannot reach {self.server}: {exc.reason}") from None
        except ValueError as exc:
            raise OperationError(f"not a URL: {exc}") from None
        return response

    def manifest(self, image: ImageRef, reference: str) -> Manifest:
        """A manifest by tag or digest, checked against the digest it was asked by (or the
        one the mirror announced for a tag)."""
        what = f"{image.registry}/{image.repository}:{reference}"
        if ":" in reference:
            what = f"{image.registry}/{image.repository}@{reference}"
        headers = {"Accept": ", ".join(ALL_MANIFEST_TYPES)}
        path = f"/v2/{image.path_name}/manifests/{reference}"
        with self._open(path, headers, what) as response:
            body = response.read(MANIFEST_LIMIT + 1)
            media_type = response.headers.get_content_type()
            announced = response.headers.get("Docker-Content-Digest")
        if len(body) > MANIFEST_LIMIT:
            raise OperationError(f"{what}: manifest larger than {MANIFEST_LIMIT} bytes")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        expected = reference if ":" in reference else announced
        if expected is not None and expected != digest:
            raise OperationError(f"{what}: manifest does not match {expected}")
        parsed = json.loads(body) if body.startswith(b"{") else {}
        if isinstance(parsed, dict) and isinstance(parsed.get("mediaType"), str):
            media_type = parsed["mediaType"]  # the document's own word over a proxy's header
        return Manifest(digest, media_type, body)

    def blob(self, image: ImageRef, digest: str) -> HTTPResponse:
        """An open blob response, to be read to its end (the caller checks the digest)."""
        return self._open(f"/v2/{image.path_name}/blobs/{digest}", {}, f"blob {digest}")
