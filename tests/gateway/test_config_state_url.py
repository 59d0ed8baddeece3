"""gateway.state_url: where the state store lives (SQLite state dir by default, PostgreSQL for replicas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.errors import ConfigError
from bastion.gateway.config import GatewaySettings, config_from_mapping
from bastion.gateway.state import StateError, open_state_store, sqlite_dir


def settings(**gateway: Any) -> GatewaySettings:
    cfg = {"upstreams": {"openai": {"base_url": "https://api.openai.com", "jurisdiction": "US"}}, "gateway": gateway}
    return config_from_mapping(cfg).gateway


def test_default_is_the_state_dir() -> None:
    s = settings(state_dir="/var/lib/gw")
    assert s.state_url is None and s.state_location == Path("/var/lib/gw") and s.state_pool_size == 10


def test_urls_are_passed_on() -> None:
    assert settings(state_url="postgresql://gw@db:5432/bastion").state_location == "postgresql://gw@db:5432/bastion"
    assert settings(state_url="sqlite:////srv/state").state_location == "sqlite:////srv/state"


@pytest.mark.parametrize(
    "url",
    ["postgresql://gw:hunter2@db/bastion", "postgres://gw:hunter2@db:5432/x", "postgresql://gw@db/x?password=hunter2"],
)
def test_a_password_in_the_url_is_refused_and_not_echoed(url: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(state_url=url)
    assert "gateway.state_url: Value error, must not carry a password: put it in PGPASSWORD" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_other_schemes_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"gateway\.state_url: String should match pattern"):
        settings(state_url="mysql://db/x")


def test_sqlite_locations(tmp_path: Path) -> None:
    assert sqlite_dir("sqlite:////srv/state") == Path("/srv/state")
    assert sqlite_dir("sqlite:///rel/state") == Path("rel/state")
    assert sqlite_dir(tmp_path) == tmp_path
    s = open_state_store(f"sqlite:///{tmp_path}/st")
    try:
        assert s.dialect.name == "sqlite" and (tmp_path / "st" / "state.sqlite3").is_file()
    finally:
        s.close()
    with pytest.raises(StateError, match="unsupported scheme 'redis'"):
        open_state_store("redis://127.0.0.1:6379/0")
    with pytest.raises(StateError, match="names no directory"):
        open_state_store("sqlite:///")
