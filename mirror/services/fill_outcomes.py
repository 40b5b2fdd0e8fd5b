"""What a failed fill means: the answer its clients get, and the reason the metrics count."""

from __future__ import annotations

from mirror.errors import (
    BlobUnknown,
    DigestMismatch,
    FillFailed,
    MirrorError,
    StorageFull,
    Unavailable,
    UpstreamNotFound,
)
from mirror.metrics import FillFailure
from mirror.services.fill import Fill
from mirror.stores.disk_space import is_no_space


def client_error(fill: Fill, repo: str) -> MirrorError:
    """What a client that asked for a failed fill is told (it got no byte of it)."""
    if isinstance(fill.error, UpstreamNotFound):
        return BlobUnknown(f"blob unknown: {repo}@{fill.digest}")
    if isinstance(fill.error, MirrorError) and fill.written == 0:
        return fill.error  # the upstream's answer, classified (unavailable, denied)
    return Unavailable(f"download of {fill.digest} failed; try again")


def failure_reason(error: Exception) -> FillFailure:
    if isinstance(error, DigestMismatch):
        return "mismatch"
    if isinstance(error, FillFailed):
        return "truncated"
    if isinstance(error, StorageFull) or is_no_space(error):
        return "disk"
    if isinstance(error, MirrorError):
        return "upstream"
    return "other"
