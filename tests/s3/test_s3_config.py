"""`[storage] backend` and `[storage.s3]`: defaults, secrets from files, and what is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from yarl import URL

from mirror.config import ConfigError, parse_config


def test_filesystem_stays_the_default() -> None:
    storage = parse_config({}).storage
    assert (storage.backend, storage.s3) == ("filesystem", None)


def test_s3_section_with_secrets_in_files(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("AKIA-TEST\n")
    (tmp_path / "secret").write_text("s3cr3t\n")
    storage = parse_config(
        {
            "storage": {
                "backend": "s3",
                "s3": {
                    "endpoint": "http://127.0.0.1:8333",
                    "bucket": "mirror",
                    "prefix": "replicas/a",
                    "access_key_file": str(tmp_path / "key"),
                    "secret_key_file": str(tmp_path / "secret"),
                    "redirect": True,
                },
            }
        }
    ).storage
    s3 = storage.s3
    assert s3 is not None
    assert (s3.endpoint, s3.bucket, s3.prefix) == (
        URL("http://127.0.0.1:8333"),
        "mirror",
        "replicas/a/",
    )
    assert (s3.access_key, s3.secret_key, s3.redirect) == ("AKIA-TEST", "s3cr3t", True)
    assert s3.redirect_memo == 0  # every redirect asks the bucket first unless told otherwise
    assert s3.delete_grace == 900.0  # 15 minutes
    assert "s3cr3t" not in repr(storage)


def test_redirect_memo_is_a_short_duration() -> None:
    s3 = parse_config(
        {"storage": {"backend": "s3", "s3": {"bucket": "mirror", "redirect_memo": "2s"}}}
    ).storage.s3
    assert s3 is not None and s3.redirect_memo == 2.0


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ({"backend": "s3"}, 'storage.backend: "s3" needs a [storage.s3] table'),
        ({"s3": {"bucket": "mirror"}}, 'storage.s3: set storage.backend = "s3" to use it'),
        ({"backend": "bucket"}, 'storage.backend: expected "filesystem" or "s3"'),
        ({"backend": "s3", "s3": {}}, "storage.s3.bucket: the bucket's name is required"),
        ({"backend": "s3", "s3": {"bucket": "Mirror_1"}}, "is not a bucket name"),
        ({"backend": "s3", "s3": {"bucket": "mirror", "secret_key": "x"}}, "go together"),
        ({"backend": "s3", "s3": {"bucket": "mirror", "endpiont": "x"}}, "did you mean 'endpoint'"),
        (
            {"backend": "s3", "s3": {"bucket": "mirror", "redirect_memo": "5m"}},
            "storage.s3.redirect_memo: at most 60 seconds",
        ),
        (
            {"backend": "s3", "s3": {"bucket": "mirror", "redirect_memo": -1}},
            "cannot be negative",
        ),
        (
            {"backend": "s3", "s3": {"bucket": "mirror", "endpoint": "http://k:s@127.0.0.1:1"}},
            "no credentials in the URL",
        ),
        (
            {"backend": "s3", "s3": {"bucket": "mirror", "delete_grace": "0s"}},
            "storage.s3.delete_grace: must be more than 0",
        ),
        (
            {"backend": "s3", "flush_interval": "5m", "s3": {"bucket": "mirror"}},
            "storage.s3.delete_grace: must be more than 3 times storage.flush_interval",
        ),
    ],
)
def test_refused(storage: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as caught:
        parse_config({"storage": storage})
    assert message in str(caught.value)
