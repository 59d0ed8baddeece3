"""Start-up checks: plain http only to this machine unless allowed; a busy port is a one-line error."""

from __future__ import annotations

import socket

import pytest

from bastion.errors import ConfigError
from bastion.gateway.config import config_from_mapping
from bastion.gateway.preflight import bind_socket, check_upstream_transport, is_loopback


def cfg(base_url: str, *, mode: str = "passthrough", **gateway: object) -> object:
    auth = {"mode": mode, "api_key_env": "OPENAI_API_KEY"} if mode == "replace" else {"mode": mode}
    return config_from_mapping(
        {"upstreams": {"openai": {"base_url": base_url, "jurisdiction": "US", "auth": auth}}, "gateway": gateway}
    )


@pytest.mark.parametrize(
    "url",
    ["https://api.openai.com", "http://127.0.0.1:8080", "http://127.9.9.9", "http://localhost:1", "http://[::1]:80"],
)
def test_allowed_upstreams(url: str) -> None:
    check_upstream_transport(cfg(url))  # type: ignore[arg-type]


@pytest.mark.parametrize("mode,says", [("replace", "the provider key ($OPENAI_API_KEY)"), ("passthrough", "client")])
def test_plain_http_to_a_remote_host(mode: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_upstream_transport(cfg("http://10.1.2.3:8080", mode=mode))  # type: ignore[arg-type]
    assert "uses plain http to 10.1.2.3" in err.value.message and says in err.value.message
    check_upstream_transport(cfg("http://10.1.2.3:8080", mode=mode, allow_plain_http=True))  # type: ignore[arg-type]


def test_is_loopback() -> None:
    assert is_loopback("LOCALHOST") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("localhost.example.com") and not is_loopback("192.168.1.1") and not is_loopback("")


def test_bind_busy_port() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}: Address already in use"):
            bind_socket("127.0.0.1", port)
    sock = bind_socket("127.0.0.1", 0)
    assert sock.getsockname()[1] > 0
    sock.close()
