"""Config for upstream auth and its failures: no credentials in a URL, the auth deadlines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mirror.config import ConfigError, parse_config

SECRET = "hunter2-s3cret"


@pytest.mark.parametrize(
    "url",
    [
        f"https://alice:{SECRET}@registry.example",
        "https://alice@registry.example",
        f"https://:{SECRET}@registry.example:5000/",
        f"http://alice:{SECRET}@127.0.0.1:5000",
    ],
)
def test_credentials_in_the_url_are_refused(url: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config({"upstreams": [{"name": "registry.example", "url": url}]})
    message = str(raised.value)
    assert message == (
        "upstreams[0].url: no credentials in the URL; set upstreams[0].username and "
        "upstreams[0].password (or password_file)"
    )
    assert SECRET not in message
    assert "alice" not in message


def test_a_url_without_credentials_is_kept() -> None:
    config = parse_config({"upstreams": [{"url": "https://registry.example:5000"}]})
    assert str(config.upstreams[0].url) == "https://registry.example:5000"


def test_cli_refuses_url_credentials_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    # Loopback and a temp folder, in case a regression lets it start serving.
    config.write_text(
        f'[server]\nlisten = "127.0.0.1:0"\n[storage]\npath = "{tmp_path / "data"}"\n'
        f'[[upstreams]]\nname = "docker.io"\nurl = "https://alice:{SECRET}@registry.example"\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "mirror", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("mirror: config error: upstreams[0].url: no credentials in the URL")
    assert "upstreams[0].username" in line and "password_file" in line
    assert SECRET not in result.stderr + result.stdout


def test_auth_and_stale_deadlines_have_short_defaults() -> None:
    config = parse_config({})
    assert config.cache.stale_after == 5.0
    [upstream] = config.upstreams
    assert upstream.token_timeout == 10.0
    assert upstream.stale_after == 5.0  # what the services read


def test_stale_after_reaches_every_upstream() -> None:
    config = parse_config(
        {
            "cache": {"stale_after": "2s"},
            "upstreams": [
                {"name": "docker.io", "token_timeout": "3s"},
                {"name": "ghcr.io", "url": "https://ghcr.io"},
            ],
        }
    )
    assert [up.stale_after for up in config.upstreams] == [2.0, 2.0]
    assert [up.token_timeout for up in config.upstreams] == [3.0, 10.0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cache": {"stale_after": "0s"}}, "cache.stale_after: must be more than 0"),
        ({"cache": {"stale_after": "soon"}}, "cache.stale_after: expected a duration"),
        ({"cache": {"stale_afer": "5s"}}, "cache.stale_afer: unknown key (did you mean"),
        ({"upstreams": [{"token_timeout": "0s"}]}, "upstreams[0].token_timeout: must be more"),
    ],
)
def test_deadline_mistakes_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert str(raised.value).startswith(message)
