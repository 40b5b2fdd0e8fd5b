"""Repository names, tags and digests: validated value types (OCI distribution grammar)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from mirror.errors import DigestInvalid, NameInvalid, TagInvalid

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_NAME_MAX = 255  # distribution's limit for a whole name
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
TAG_NAME = _TAG  # what a tag's name may be (fullmatch)
_DIGEST = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([A-Za-z0-9=_-]+)$")
# The algorithms we can verify, with the length of their lowercase hex encoding.
_HEX_LENGTH = {"sha256": 64, "sha512": 128}
_HEX = re.compile(r"^[a-f0-9]+$")


@dataclass(frozen=True, slots=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        # fullmatch: `$` also matches before a final newline, so "sha256:<hex>\n" parsed.
        match = _DIGEST.fullmatch(text)
        if not match:
            raise DigestInvalid(f"invalid digest {text[:200]!r}")
        algorithm, encoded = match.groups()
        expected = _HEX_LENGTH.get(algorithm)
        if expected is None:
            raise DigestInvalid(f"unsupported digest algorithm {algorithm[:32]!r}")
        if len(encoded) != expected or not _HEX.match(encoded):
            raise DigestInvalid(f"invalid {algorithm} digest {text[:200]!r}")
        return cls(algorithm, encoded)

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls("sha256", hashlib.sha256(data).hexdigest())

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)

    def matches(self, data: bytes) -> bool:
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


@dataclass(frozen=True, slots=True)
class Tag:
    name: str

    @classmethod
    def parse(cls, text: str) -> Tag:
        # fullmatch: `$` also matches before a final newline, so "latest\n" was a tag.
        if not _TAG.fullmatch(text):
            raise TagInvalid(f"invalid tag {text[:200]!r}")
        return cls(text)

    def __str__(self) -> str:
        return self.name


Reference = Tag | Digest


def parse_reference(text: str) -> Reference:
    """A manifest reference: a digest when it has a colon, else a tag."""
    return Digest.parse(text) if ":" in text else Tag.parse(text)


def parse_repository(text: str, docker_hub: bool) -> str:
    """Validate a repository name; for Docker Hub, `alpine` means `library/alpine`."""
    # fullmatch: `$` also matches before a final newline, so "alpine\n" was a name. The limit
    # counts the library/ prefix: "a" * 250 gave a 258-character name that failed re-parsing.
    name = f"library/{text}" if docker_hub and "/" not in text else text
    if len(name) > _NAME_MAX or not _NAME.fullmatch(text):
        raise NameInvalid(f"invalid repository name {text[:300]!r}", detail={"name": text[:300]})
    return name
