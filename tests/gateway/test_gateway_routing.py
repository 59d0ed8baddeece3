"""Pass-through routes, default deny, unknown upstreams, credential handling, hop-by-hop headers, metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gw_support import CLIENT_TOKEN, PROVIDER_KEY, Env, make_env
from gw_upstream import FakeOpenAI


def test_allowed_route_passes_through(env: Env) -> None:
    n = len(env.upstream.received)
    models = env.client().models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini"]
    rec = env.upstream.received[n]
    assert rec.path == "/v1/models"
    assert rec.headers["authorization"] == f"Bearer {CLIENT_TOKEN}"  # passthrough mode
    entry = env.audit_entries()[-1]["data"]
    assert entry["decision"] == "allow" and entry["route"] == "models.list"


def test_route_not_on_allow_list_denied(env: Env) -> None:
    n = len(env.upstream.received)
    with pytest.raises(openai.PermissionDeniedError) as info:
        env.client().chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "route_not_allowed"
    assert env.upstream.received[n:] == []


def test_unknown_route_denied(env: Env) -> None:
    n = len(env.upstream.received)
    r = httpx.post(f"{env.url}/openai/v1/assistants", json={"x": 1})
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "route_not_allowed"
    assert env.upstream.received[n:] == []
    assert env.audit_entries()[-1]["data"]["reason"] == "route_not_allowed"


def test_unknown_upstream_denied(env: Env) -> None:
    n = len(env.upstream.received)
    with pytest.raises(openai.NotFoundError) as info:
        env.client(prefix="nowhere").models.list()
    assert info.value.code == "unknown_upstream"
    assert env.upstream.received[n:] == []
    assert env.audit_entries()[-1]["data"]["reason"] == "unknown_upstream"


def test_hop_by_hop_headers_not_forwarded(env: Env) -> None:
    n = len(env.upstream.received)
    r = httpx.get(
        f"{env.url}/openai/v1/files",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic abc",
            "X-End-To-End": "kept",
            "Authorization": "Bearer t",
        },
    )
    assert r.status_code == 200
    h = env.upstream.received[n].headers
    assert "x-secret-hop" not in h and "keep-alive" not in h and "proxy-authorization" not in h
    assert "x-end-to-end" not in h  # v2: only allow-listed headers are forwarded
    assert h["host"] == env.upstream_url.removeprefix("http://")


def test_metrics_endpoint(env: Env) -> None:
    env.client().models.list()
    text = httpx.get(f"{env.url}/metrics").text
    assert 'bastion_gateway_requests_total{decision="allow",route="models.list",upstream="openai"}' in text
    assert "bastion_gateway_upstream_latency_seconds_bucket" in text
    assert "bastion_gateway_bytes_scanned_total" in text


@pytest.fixture()
def replace_env(
    tmp_path: Path, policy: Any, fake_upstream: tuple[FakeOpenAI, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    monkeypatch.setenv("BASTION_TEST_OPENAI_KEY", PROVIDER_KEY)
    fake, url = fake_upstream
    gw, srv = make_env(tmp_path, policy, fake, url, auth={"mode": "replace", "api_key_env": "BASTION_TEST_OPENAI_KEY"})
    try:
        yield Env(fake, url, gw, srv.url, tmp_path)
    finally:
        srv.stop()


def test_replace_mode_sends_gateway_key(replace_env: Env) -> None:
    env = replace_env
    n = len(env.upstream.received)
    env.client(default_headers={"api-key": "client-azure-style"}).models.list()
    h = env.upstream.received[n].headers
    assert h["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert "api-key" not in h
    text = (env.state_dir / "audit.jsonl").read_text()
    assert PROVIDER_KEY not in text and CLIENT_TOKEN not in text


def test_replace_mode_missing_key_fails_at_start(tmp_path: Path, policy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.errors import ConfigError
    from bastion.gateway.app import create_gateway
    from bastion.gateway.config import config_from_mapping

    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    cfg = config_from_mapping(
        {
            "upstreams": {
                "openai": {
                    "base_url": "http://127.0.0.1:9",
                    "jurisdiction": "US",
                    "auth": {"mode": "replace", "api_key_env": "NO_SUCH_KEY_VAR"},
                }
            },
            "gateway": {"state_dir": str(tmp_path)},
        }
    )
    with pytest.raises(ConfigError, match=r"\$NO_SUCH_KEY_VAR"):
        create_gateway(cfg, policy)


def test_upstream_down_is_a_clear_502(tmp_path: Path, policy: Any) -> None:
    _gw, srv = make_env(tmp_path, policy, FakeOpenAI(), "http://127.0.0.1:9")
    try:
        r = httpx.get(f"{srv.url}/openai/v1/models", headers={"Authorization": "Bearer x"})
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "upstream_unreachable"
    finally:
        srv.stop()
    entries = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert entries[-1]["data"]["reason"] == "upstream_unreachable"


def test_audit_log_is_a_verifiable_chain(env: Env) -> None:
    from bastion.provenance.ledger import verify_ledger

    env.client().models.list()
    head = verify_ledger(env.state_dir / "audit.jsonl")
    assert head.entries >= 1


def test_allowed_clients_by_fingerprint(tmp_path: Path, policy: Any, fake_upstream: tuple[FakeOpenAI, str]) -> None:
    import hashlib

    fake, url = fake_upstream
    fp = "sha256:" + hashlib.sha256(CLIENT_TOKEN.encode()).hexdigest()[:16]
    gw, srv = make_env(tmp_path, policy, fake, url, allowed_clients=[fp])
    try:
        env = Env(fake, url, gw, srv.url, tmp_path)
        assert env.client().models.list().data
        n = len(fake.received)
        with pytest.raises(openai.AuthenticationError) as info:
            env.client(api_key="stranger").models.list()
        assert info.value.code == "client_not_allowed"
        assert fake.received[n:] == []
    finally:
        srv.stop()


def test_response_headers_and_request_body_pass_through(
    tmp_path: Path, policy: Any, fake_upstream: tuple[FakeOpenAI, str]
) -> None:
    fake, url = fake_upstream
    _gw, srv = make_env(tmp_path, policy, fake, url, allow_routes=["chat.completions.create"])
    try:
        n = len(fake.received)

        def body() -> Any:
            yield b'{"model": "m", '
            yield b'"messages": []}'

        r = httpx.post(
            f"{srv.url}/openai/v1/chat/completions", content=body(), headers={"Authorization": "Bearer t"}
        )  # chunked request body, no Content-Length
        assert r.status_code == 200 and r.headers["x-upstream"] == "yes"
        assert fake.received[n].body == b'{"model": "m", "messages": []}'
        # models.list is not on this gateway's explicit allow list
        assert httpx.get(f"{srv.url}/openai/v1/models").status_code == 403
    finally:
        srv.stop()


def test_concurrent_requests_all_audited_in_one_chain(env: Env) -> None:
    import asyncio

    from bastion.provenance.ledger import verify_ledger

    before = len(env.audit_entries())

    async def burst() -> list[int]:
        async with httpx.AsyncClient(headers={"Authorization": "Bearer t"}) as c:
            rs = await asyncio.gather(*(c.get(f"{env.url}/openai/v1/models") for _ in range(60)))
            return [r.status_code for r in rs]

    assert asyncio.run(burst()) == [200] * 60
    entries = env.audit_entries()
    assert len(entries) - before == 60
    assert verify_ledger(env.state_dir / "audit.jsonl").entries == len(entries)


@pytest.mark.parametrize(
    "path",
    [
        "/openai/v1/models/..",
        "/openai/v1/models/%2E%2E",
        "/openai/v1/fine_tuning/jobs/../cancel",
        "/openai/v1/files/x%3Fa=1",
        "/openai/v1//files",
    ],
)
def test_ambiguous_paths_refused(env: Env, path: str) -> None:
    import http.client

    n = len(env.upstream.received)
    host, port = env.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)  # sends the path exactly as written
    conn.request("POST" if "cancel" in path else "GET", path, headers={"Authorization": "Bearer t"})
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status in (403, 404), body
    assert env.upstream.received[n:] == []


def test_large_download_streams_through(env: Env) -> None:
    from gw_support import chat, jsonl

    data = jsonl(*[chat(f"record {i} " + "x" * 500) for i in range(3000)])  # ~1.6 MB
    import io

    f = env.client().files.create(file=("big.jsonl", io.BytesIO(data)), purpose="fine-tune")
    got = env.client().files.content(f.id).read()
    assert got == data
