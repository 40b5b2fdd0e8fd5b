"""The test S3 server itself, checked with a plain S3 client before the mirror relies on it."""

from __future__ import annotations

import uuid

import pytest
from botocore.exceptions import ClientError
from support.s3server import S3Server


def test_plain_client_round_trip_with_range(seaweedfs: S3Server) -> None:
    bucket = f"check-{uuid.uuid4().hex[:8]}"
    seaweedfs.create_bucket(bucket)
    client = seaweedfs.client()
    client.put_object(Bucket=bucket, Key="a/b", Body=b"0123456789")
    whole = client.get_object(Bucket=bucket, Key="a/b")["Body"].read()
    ranged = client.get_object(Bucket=bucket, Key="a/b", Range="bytes=2-4")["Body"].read()
    assert (whole, ranged) == (b"0123456789", b"234")
    assert seaweedfs.objects(bucket) == {"a/b": 10}


def test_signatures_are_checked(seaweedfs: S3Server) -> None:
    """A wrong secret is refused: this server can stand in for a real one."""
    with pytest.raises(ClientError) as caught:
        seaweedfs.client(secret_key="not-the-secret").list_buckets()
    assert caught.value.response["Error"]["Code"] in ("SignatureDoesNotMatch", "AccessDenied")
