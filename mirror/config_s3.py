"""`[storage.s3]`: the S3-compatible bucket that holds the blobs when `storage.backend = "s3"`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from yarl import URL

from mirror.config_tables import Section, http_url, positive, secret
from mirror.errors import ConfigError
from mirror.units import parse_duration

BACKENDS = ("filesystem", "s3")
DEFAULT_REGION = "us-east-1"
MAX_REDIRECT_MEMO = 60.0
# S3's own bucket-name rule (3-63 of lowercase letters, digits, dots and hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, slots=True)
class S3Config:
    bucket: str
    # None: the service's own endpoint for `region` (AWS); any S3-compatible server otherwise.
    endpoint: URL | None = None
    prefix: str = ""  # "" or ending in "/": several mirrors can share a bucket
    region: str = DEFAULT_REGION
    # None: botocore's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, roles).
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    redirect: bool = False  # blob hits answer 307 to a presigned URL of the object
    presign_ttl: float = 300.0  # how long a presigned URL is valid; checked when a GET starts
    # How long an object seen in the bucket is redirected to without another HEAD (0: always
    # ask). A window in which another replica's delete sends clients to a 404 (stores/s3_seen).
    redirect_memo: float = 0.0
    # A multipart upload begun this long ago is a fill whose replica died: the janitor aborts
    # it (longer than any download takes; replicas sharing a bucket cannot tell each other's).
    abandoned_after: float = 86400.0
    # Retention deletes an object from the bucket only this long after removing it from the
    # index, and not if another replica reported reading it meanwhile.
    delete_grace: float = 900.0


def parse_s3(section: Section) -> S3Config:
    defaults = S3Config(bucket="-")
    endpoint_text = section.take_str("endpoint")
    bucket = section.take_str("bucket")
    prefix = section.take_str("prefix") or ""
    region = section.take_str("region") or defaults.region
    access_key = secret(section, "access_key")
    secret_key = secret(section, "secret_key")
    redirect = section.take_bool("redirect", defaults.redirect)
    ttl = section.take("presign_ttl")
    memo = section.take("redirect_memo")
    abandoned = section.take("abandoned_after")
    grace = section.take("delete_grace")
    section.finish()
    instead = f"{section.key('access_key')} and {section.key('secret_key')} (or their _file)"
    endpoint = (
        None if endpoint_text is None else http_url(section, "endpoint", endpoint_text, instead)
    )
    if bucket is None:
        raise ConfigError(f"{section.key('bucket')}: the bucket's name is required")
    if not _BUCKET.fullmatch(bucket):
        raise ConfigError(f"{section.key('bucket')}: {bucket[:70]!r} is not a bucket name")
    if (access_key is None) != (secret_key is None):
        raise ConfigError(f"{section.key('access_key')}: access_key and secret_key go together")
    if prefix.startswith("/"):
        raise ConfigError(f"{section.key('prefix')}: a key prefix does not start with /")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return S3Config(
        bucket=bucket,
        endpoint=endpoint,
        prefix=prefix,
        region=region,
        access_key=access_key,
        secret_key=secret_key,
        redirect=redirect,
        presign_ttl=defaults.presign_ttl
        if ttl is None
        else positive(parse_duration(ttl, section.key("presign_ttl")), section, "presign_ttl"),
        redirect_memo=defaults.redirect_memo if memo is None else _memo(section, memo),
        abandoned_after=defaults.abandoned_after
        if abandoned is None
        else positive(
            parse_duration(abandoned, section.key("abandoned_after")), section, "abandoned_after"
        ),
        delete_grace=defaults.delete_grace
        if grace is None
        else positive(parse_duration(grace, section.key("delete_grace")), section, "delete_grace"),
    )


def _memo(section: Section, value: object) -> float:
    seconds = parse_duration(value, section.key("redirect_memo"))
    if seconds > MAX_REDIRECT_MEMO:
        # Each second is a second in which a purge elsewhere sends clients to a 404.
        raise ConfigError(f"{section.key('redirect_memo')}: at most {MAX_REDIRECT_MEMO:g} seconds")
    return seconds


def parse_backend(section: Section) -> tuple[str, S3Config | None]:
    """`storage.backend` and, with "s3", its `[storage.s3]` table (required then, and refused
    with the filesystem backend, where it would silently do nothing)."""
    backend = section.take_str("backend") or "filesystem"
    raw_s3 = section.take("s3")
    if backend not in BACKENDS:
        raise ConfigError(f'{section.key("backend")}: expected "filesystem" or "s3"')
    if backend == "filesystem":
        if raw_s3 is not None:
            raise ConfigError(f'{section.key("s3")}: set {section.key("backend")} = "s3" to use it')
        return backend, None
    if raw_s3 is None:
        raise ConfigError(f'{section.key("backend")}: "s3" needs a [{section.key("s3")}] table')
    return backend, parse_s3(Section(raw_s3, section.key("s3")))
