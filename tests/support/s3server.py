"""What the S3 suites need of the real S3 server they run against, whichever it is.

Two implementations: SeaweedFS (support/seaweedfs.py, the default, a pip-installed binary) and a
one-node Ceph with RGW (support/ceph.py, Debian's packages; `make test-ceph`). The session
fixture `seaweedfs` (tests/conftest.py) starts the one that MIRROR_TEST_S3 names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import botocore.session
from botocore.config import Config

# MIRROR_TEST_S3's values; unset (or empty) means SeaweedFS.
SEAWEEDFS = "seaweedfs"
CEPH = "ceph"
KINDS = (SEAWEEDFS, CEPH)
REGION = "us-east-1"


class S3Server(Protocol):
    """A started S3-compatible server on 127.0.0.1 that checks SigV4 signatures."""

    access_key: str
    secret_key: str
    s3_port: int
    log_path: Path
    startup_seconds: float

    @property
    def endpoint(self) -> str: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def client(self, *, secret_key: str | None = None) -> Any:
        """A plain (blocking) botocore S3 client: what the tests check the bucket with."""

    def create_bucket(self, name: str) -> None: ...

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under `prefix`, key → size."""

    def uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads begun and neither completed nor aborted."""


class BucketChecks:
    """What both servers share: a plain client on `endpoint` and the bucket checks built on it."""

    access_key: str
    secret_key: str

    @property
    def endpoint(self) -> str:
        raise NotImplementedError

    def client(self, *, secret_key: str | None = None) -> Any:
        """A plain (blocking) botocore S3 client: what the tests check the bucket with."""
        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            config=Config(signature_version="s3v4", retries={"max_attempts": 1}),
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under `prefix`, key → size."""
        found: dict[str, int] = {}
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = int(item["Size"])
        return found

    def uploads(self, bucket: str) -> list[str]:
        """Keys of multipart uploads begun and neither completed nor aborted."""
        answer = self.client().list_multipart_uploads(Bucket=bucket)
        return [str(upload["Key"]) for upload in answer.get("Uploads", [])]


def chosen_kind() -> str:
    """The server MIRROR_TEST_S3 asks for; an unknown name is an error, not a silent default."""
    kind = os.environ.get("MIRROR_TEST_S3", "").strip().lower() or SEAWEEDFS
    if kind not in KINDS:
        raise ValueError(f"MIRROR_TEST_S3={kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def make_server(kind: str, root: Path) -> S3Server:
    """An unstarted server of that kind, its files under `root`."""
    if kind == CEPH:
        from .ceph import Ceph

        return Ceph(root)
    from .seaweedfs import SeaweedFS

    return SeaweedFS(root)
