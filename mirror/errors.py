"""One error vocabulary: each error knows its HTTP status and OCI error code."""

from __future__ import annotations

import json
from typing import Any, ClassVar


class MirrorError(Exception):
    """An error a client sees as an OCI error body: {"errors":[{code, message, detail}]}."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "UNKNOWN"

    def __init__(self, message: str, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def body(self) -> bytes:
        error = {"code": self.code, "message": self.message, "detail": self.detail}
        return json.dumps({"errors": [error]}).encode()


class NameInvalid(MirrorError):
    status = 400
    code = "NAME_INVALID"


class NameUnknown(MirrorError):
    status = 404
    code = "NAME_UNKNOWN"


class TagInvalid(MirrorError):
    status = 400
    code = "TAG_INVALID"


class DigestInvalid(MirrorError):
    status = 400
    code = "DIGEST_INVALID"


class ManifestUnknown(MirrorError):
    status = 404
    code = "MANIFEST_UNKNOWN"


class BlobUnknown(MirrorError):
    status = 404
    code = "BLOB_UNKNOWN"


class PaginationInvalid(MirrorError):
    status = 400
    code = "PAGINATION_NUMBER_INVALID"


class RangeInvalid(MirrorError):
    status = 416
    code = "RANGE_INVALID"


class Unsupported(MirrorError):
    status = 405
    code = "UNSUPPORTED"


class Unauthorized(MirrorError):
    status = 401
    code = "UNAUTHORIZED"


class Denied(MirrorError):
    status = 403
    code = "DENIED"


class TooManyRequests(MirrorError):
    status = 429
    code = "TOOMANYREQUESTS"


class Unavailable(MirrorError):
    """The upstream cannot answer and the cache holds nothing to serve instead."""

    status = 503
    code = "UNAVAILABLE"


class NotFound(MirrorError):
    status = 404
    code = "NOT_FOUND"
