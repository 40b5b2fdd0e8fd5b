"""Fixtures of the in-process S3 suites: a fresh bucket per test, and that test's mirrors
(`make_mirror`) made with the S3 backend on it, under a key prefix."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from support.s3server import S3Server

KEY_PREFIX = "team-a/"  # several mirrors can share a bucket: the suites use a prefix


@pytest.fixture
def bucket(seaweedfs: S3Server, mirror_config: dict[str, Any]) -> str:
    name = f"s3-{uuid.uuid4().hex[:12]}"
    seaweedfs.create_bucket(name)
    mirror_config["storage"]["backend"] = "s3"
    mirror_config["storage"]["s3"] = {
        "endpoint": seaweedfs.endpoint,
        "bucket": name,
        "prefix": KEY_PREFIX.rstrip("/"),
        "access_key": seaweedfs.access_key,
        "secret_key": seaweedfs.secret_key,
    }
    return name
