"""A replica whose bucket refuses it (wrong credentials, no such bucket) starts, says so in one
error line, and answers /readyz 503 naming the cause until the bucket answers; no crash."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from support.mirror_process import MirrorProcesses, process_config
from support.poll import wait_until
from support.s3server import S3Server


def readyz(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.mark.parametrize(
    ("secret_key", "bucket_made", "cause"),
    [
        ("not-the-secret", True, ": 403 (check storage.s3 access_key and secret_key)"),
        (None, False, ": 404 (no such bucket"),
    ],
    ids=["wrong-secret", "no-bucket"],
)
def test_a_bucket_that_refuses_the_replica_is_one_error_line_and_readyz_503(
    seaweedfs: S3Server,
    mirror_processes: MirrorProcesses,
    tmp_path: Path,
    secret_key: str | None,
    bucket_made: bool,
    cause: str,
) -> None:
    bucket = f"ready-{uuid.uuid4().hex[:12]}"
    if bucket_made:
        seaweedfs.create_bucket(bucket)
    config = process_config("http://127.0.0.1:9", tmp_path / "replica" / "data")
    config["storage"]["backend"] = "s3"
    config["storage.s3"] = {  # a table of its own in the TOML the process reads
        "endpoint": seaweedfs.endpoint,
        "bucket": bucket,
        "access_key": seaweedfs.access_key,
        "secret_key": secret_key or seaweedfs.secret_key,
    }
    mirror = mirror_processes(config=config)  # it starts: /healthz answers

    def errors() -> list[str]:
        return [line for line in mirror.stderr_lines() if " ERROR " in line]

    wait_until(lambda: bool(errors()), within=10, what="the error line about the bucket")
    for _ in range(3):  # the probes go on; the line is not repeated
        status, body = readyz(mirror.url)
        assert status == 503
        [problem] = [p for p in body["problems"] if p.startswith("store: bucket")]
        assert bucket in problem and cause in problem
    [line] = errors()
    assert "S3 store unusable" in line and bucket in line and cause in line
    assert seaweedfs.secret_key not in "".join(mirror.stderr_lines())  # no secret in a log
    assert mirror.running

    if not bucket_made:  # the operator creates it: ready again, without a restart
        seaweedfs.create_bucket(bucket)
        wait_until(lambda: readyz(mirror.url)[0] == 200, within=10, what="ready once it exists")
        assert any("usable again" in line for line in mirror.stderr_lines())
