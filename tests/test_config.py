"""Config: defaults with no file, units, and one clear line for every mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes.ops import Cli

from mirror.config import DOCKER_HUB_URL, ConfigError, load_config, parse_config


def test_no_file_gives_docker_hub_defaults() -> None:
    config = load_config(None)
    assert (config.server.host, config.server.port) == ("0.0.0.0", 5000)
    assert config.storage.path == Path("./data")
    assert config.cache.tag_ttl == 600
    [upstream] = config.upstreams
    assert upstream.name == "docker.io"
    assert str(upstream.url) == DOCKER_HUB_URL
    assert upstream.offline is False


def test_example_config_is_the_default(tmp_path: Path) -> None:
    example = Path(__file__).parent.parent / "config.example.toml"
    assert load_config(example) == load_config(None)


def test_units_are_parsed() -> None:
    config = parse_config(
        {
            "server": {"listen": "127.0.0.1:8080"},
            "cache": {"tag_ttl": "1h"},
            "upstreams": [
                {"name": "docker.io", "url": "http://127.0.0.1:1", "read_timeout": "250ms"},
                {"name": "ghcr.io", "url": "https://ghcr.io", "tag_ttl": "30s", "offline": True},
            ],
        }
    )
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.cache.tag_ttl == 3600
    assert config.upstreams[0].read_timeout == 0.25
    assert config.tag_ttl_for(config.upstreams[0]) == 3600
    assert config.tag_ttl_for(config.upstreams[1]) == 30
    assert config.upstreams[1].offline is True


def test_password_file_is_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    config = parse_config({"upstreams": [{"username": "me", "password_file": str(secret)}]})
    assert config.upstreams[0].password == "s3cret"
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cache": {"tag_tll": "10m"}}, "cache.tag_tll: unknown key"),
        ({"cache": {"tag_ttl": "ten minutes"}}, "cache.tag_ttl: expected a duration"),
        ({"server": {"listen": "localhost"}}, "server.listen: expected"),
        ({"server": {"listen": "0.0.0.0:99999"}}, "server.listen: port must be"),
        ({"upstreams": [{"url": "ftp://x"}]}, "upstreams[0].url: expected an http"),
        ({"upstreams": [{"name": "a"}, {"name": "a"}]}, "upstreams[1].name: 'a' is used twice"),
        ({"upstreams": [{"username": "u"}]}, "upstreams[0].username: username and password"),
        ({"upstreams": [{"offline": "yes"}]}, "upstreams[0].offline: expected true or false"),
        ({"upstreams": [{"password_file": "/nonexistent"}]}, "upstreams[0].password_file"),
        ({"storage": "data"}, "storage: expected a table"),
        ({"stoarge": {}}, "stoarge: unknown key"),
        ({"storage": {"flush_interval": "0s"}}, "storage.flush_interval: must be more than 0"),
        ({"storage": {"max_size": "lots"}}, "storage.max_size: expected a size"),
        ({"storage": {"low_water": 1.5}}, "storage.low_water: expected a fraction"),
        ({"admin": {"token": "short"}}, "admin.token: use at least 16 characters"),
        ({"server": {"log_format": "xml"}}, "server.log_format: expected"),
    ],
)
def test_mistakes_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(data)
    assert str(raised.value).startswith(message)


def test_cli_exits_2_with_one_line_on_a_bad_config(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[cache]\ntag_ttl = "soon"\n')
    result = cli.run("serve", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'mirror: config error: cache.tag_ttl: expected a duration such as "10m" or "30s", '
        "got 'soon'"
    ]


def test_cli_exits_2_on_an_unreadable_file(cli: Cli, tmp_path: Path) -> None:
    result = cli.run("serve", "--config", str(tmp_path / "missing.toml"))
    assert result.returncode == 2
    assert "missing.toml: cannot read" in result.stderr


def test_cli_exits_2_on_invalid_toml(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[server\n")
    result = cli.run("serve", "--config", str(config))
    assert result.returncode == 2
    assert "not valid TOML" in result.stderr
