"""One error vocabulary: what a client sees (with its HTTP status and OCI code), and the few
signals that stay inside the process."""

from __future__ import annotations

import json
from typing import Any, ClassVar

# -- what a client sees: one middleware turns these into an OCI error body -------------------


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

    def headers(self) -> dict[str, str]:
        """Headers the answer carries besides the body (Retry-After, a challenge)."""
        return {}


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


class CredentialsRequired(Unauthorized):
    """A pull without valid credentials when [auth] htpasswd is set: the challenge tells the
    client to send Basic credentials (RFC 9110 requires one with every 401)."""

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Basic realm="mirror"'}


class Denied(MirrorError):
    """The client may not do this here (its network is not allowed to pull)."""

    status = 403
    code = "DENIED"


class TooManyRequests(MirrorError):
    """Over a limit on downloads the mirror starts; the client may try again later."""

    status = 429
    code = "TOOMANYREQUESTS"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class NotFound(MirrorError):
    status = 404
    code = "NOT_FOUND"


class Unavailable(MirrorError):
    """The upstream cannot answer and the cache holds nothing to serve instead."""

    status = 503
    code = "UNAVAILABLE"


class StorageFull(Unavailable):
    """The data folder's disk is full: what needed writing could not be stored."""


# -- the upstream's answers, classified once (services turn them into the codes above) ---------


class UpstreamUnavailable(Unavailable):
    """The upstream cannot answer now (refused, timeout, 5xx, 429, auth server down, offline):
    what stale-if-error reacts to."""

    def __init__(self, upstream: str, reason: str, message: str) -> None:
        super().__init__(f"upstream {upstream} unavailable: {message}")
        self.upstream = upstream
        self.reason = reason  # a bounded label for mirror_upstream_errors_total


class UpstreamNotFound(NotFound):
    """The upstream has nothing for this request: a 404, or another 4xx refusal such as
    distribution's 400 MANIFEST_INVALID for an Accept set it cannot satisfy. The service that
    knows what was asked for turns it into MANIFEST_UNKNOWN, BLOB_UNKNOWN or NAME_UNKNOWN."""

    def __init__(self, upstream: str) -> None:
        super().__init__(f"upstream {upstream} has no such content")
        self.upstream = upstream


class UpstreamDenied(MirrorError):
    """The upstream refused access even after authenticating. Clients do not authenticate to
    the mirror, so this is a 403 DENIED: a 401 must carry a WWW-Authenticate challenge, and no
    credentials a client could send would change the answer."""

    status = 403
    code = "DENIED"


class TokenServerFailed(Exception):
    """The token server answered something other than a token (not a refusal)."""


class TokenRefused(Exception):
    """The token server refused our credentials (401 or 403)."""


# -- inside the process: never shown to a client as such ---------------------------------------


class FillFailed(Exception):
    """A blob download ended without a verified blob: its readers cut their clients short."""


class DigestMismatch(FillFailed):
    """The upstream's bytes do not hash to the digest asked for."""


class ConfigError(ValueError):
    """A configuration problem; the message names the key and what is wrong."""


class OperationError(Exception):
    """A one-line reason a command-line operation could not be done."""


# -- start-up: the one line a refused start (or an offline command) prints, exit status 2 ------


class StartupError(Exception):
    """Why the mirror cannot start, or an offline command cannot open its data folder: the
    subject, the setting it concerns and the cause, printed as one line (exit status 2, since
    restarting will not help). The command line may rename the setting (`--data` for
    `storage.path` when the option was given)."""

    def __init__(self, subject: str, setting: str, cause: str) -> None:
        super().__init__(subject, setting, cause)
        self.subject = subject
        self.setting = setting
        self.cause = cause

    def __str__(self) -> str:
        return f"{self.subject} ({self.setting}): {self.cause}"


class DataFolderUnusable(StartupError):
    """The data folder cannot be created, is not a folder, or cannot be written."""

    def __init__(self, folder: object, cause: str) -> None:
        super().__init__(f"cannot use data folder {folder}", "storage.path", cause)


class DataFolderLocked(StartupError):
    """Another process (a `mirror serve`, or an offline command) holds the data folder."""

    def __init__(self, folder: object, pid: int | None, lock_file: object) -> None:
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(
            f"cannot use data folder {folder}",
            "storage.path",
            f"in use by another mirror process ({holder}, lock {lock_file})",
        )
        self.pid = pid


class SchemaTooNew(StartupError):
    """The index was written by a newer mirror: its schema is ahead of this code's migrations,
    and opening it could misread or damage it."""

    def __init__(self, database: object, found: int, known: int) -> None:
        super().__init__(
            f"cannot open {database}",
            "storage.path",
            f"its schema version {found} is newer than this mirror's ({known}); "
            "run the newer mirror, or move the folder aside",
        )
        self.found = found
        self.known = known
