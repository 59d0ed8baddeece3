"""The smallest provider spec (the one docs/gateway-providers.md shows), run end to end in-process:
two hosts, header and query allowlists, id patterns, a JSON route with a file reference, a gateway-held key
sent by an httpx.Auth strategy, and a provider-shaped (XML) error encoder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gw_support import POLICY_YAML

from bastion.adapters import register_provider
from bastion.gateway.app import Gateway, create_gateway
from bastion.gateway.config import config_from_mapping
from bastion.gateway.errors import Refusal
from bastion.gateway.spec import FileRef, Opaque, ProviderSpec, RouteSpec
from bastion.policies import load_policy_text

pytestmark = pytest.mark.anyio


def xml_error(refusal: Refusal) -> tuple[str, bytes]:
    from xml.sax.saxutils import escape

    return (
        "application/xml",
        f"<Error><Code>{refusal.kind}</Code><Message>{escape(refusal.client_message)}</Message></Error>".encode(),
    )


# -- the smallest useful spec --------------------------------------------------------------------------------
ACME = ProviderSpec(
    name="acme",
    ids={"dataset": r"ds_[a-z0-9]{4,32}", "job": r"job_[a-z0-9]{4,32}"},
    headers=(Opaque("acme-project", r"prj-[a-z0-9]{1,16}"),),
    credentials={"x-acme-key": "key"},
    held_key="x-acme-key",
    errors=xml_error,
    routes=(
        RouteSpec("GET", "/v2/datasets", "datasets.list", query=(Opaque("page", r"[0-9]{1,4}"),), default="on"),
        RouteSpec("GET", "/v2/datasets/{dataset}", "datasets.get", default="on", host="data"),
        RouteSpec(
            "POST", "/v2/jobs", "jobs.create", body="json", default="always", refs=(FileRef("dataset", required=True),)
        ),
        RouteSpec("POST", "/v2/jobs/{job}/cancel", "jobs.cancel", default="on"),
    ),
)


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture()
async def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Gateway, list[httpx.Request]]]:
    register_provider(ACME)
    monkeypatch.setenv("ACME_KEY", "acme-held-key-123")
    seen: list[httpx.Request] = []

    async def upstream(request: httpx.Request) -> httpx.Response:
        await request.aread()
        seen.append(request)
        return httpx.Response(200, json={"id": "job_1234", "ok": True})

    cfg = config_from_mapping(
        {
            "upstreams": {
                "acme": {
                    "base_url": "https://api.acme.example",
                    "hosts": {"data": "https://data.acme.example"},
                    "jurisdiction": "EU",
                    "auth": {"mode": "replace", "api_key_env": "ACME_KEY"},
                }
            },
            "gateway": {"state_dir": str(tmp_path)},
        }
    )
    gw = create_gateway(cfg, load_policy_text(POLICY_YAML), transport=httpx.MockTransport(upstream))
    try:
        yield gw, seen
    finally:
        await gw.aclose()


def client(gw: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gw.app), base_url="http://gw", headers={"x-acme-key": "client-key"}
    )


async def test_routes_hosts_allowlists_and_held_key(acme: tuple[Gateway, list[httpx.Request]]) -> None:
    gw, seen = acme
    async with client(gw) as c:
        r1 = await c.get("/acme/v2/datasets", params={"page": "2"}, headers={"acme-project": "prj-a1", "X-Other": "x"})
        r2 = await c.get("/acme/v2/datasets/ds_abcd")
    assert r1.status_code == r2.status_code == 200
    assert str(seen[0].url) == "https://api.acme.example/v2/datasets?page=2"
    assert seen[0].headers["acme-project"] == "prj-a1" and "x-other" not in seen[0].headers
    assert seen[0].headers["x-acme-key"] == "acme-held-key-123"  # the held key, written by the auth strategy
    assert str(seen[1].url) == "https://data.acme.example/v2/datasets/ds_abcd"  # the route's own host


async def test_refusals_use_the_providers_error_shape(acme: tuple[Gateway, list[httpx.Request]]) -> None:
    gw, seen = acme
    async with client(gw) as c:
        bad_id = await c.get("/acme/v2/datasets/jane.roe@example.org")
        bad_query = await c.get("/acme/v2/datasets", params={"q": "x"})
        body_on_cancel = await c.post("/acme/v2/jobs/job_abcd/cancel", json={"why": "x"})
        unscanned = await c.post("/acme/v2/jobs", json={"dataset": "ds_never"})
    assert bad_id.headers["content-type"] == "application/xml"
    assert b"<Code>invalid_id</Code>" in bad_id.content and b"jane.roe" not in bad_id.content
    assert b"<Code>invalid_query</Code>" in bad_query.content
    assert b"<Code>body_not_allowed</Code>" in body_on_cancel.content
    assert unscanned.status_code == 403 and b"<Code>unscanned_file</Code>" in unscanned.content
    assert seen == []


def test_a_spec_with_an_id_without_pattern_is_rejected() -> None:
    with pytest.raises(ValueError, match="without a pattern"):
        ProviderSpec(name="broken", ids={}, routes=(RouteSpec("GET", "/v1/x/{x_id}", "x.get"),))


def test_known_hosts_give_the_jurisdiction(tmp_path: Path) -> None:
    cfg = config_from_mapping(
        {
            "upstreams": {"eu": {"base_url": "https://eu.api.openai.com", "adapter": "openai"}},
            "gateway": {"state_dir": str(tmp_path)},
        }
    )
    gw = create_gateway(cfg, load_policy_text(POLICY_YAML))
    try:
        assert gw.upstreams["eu"].jurisdiction == "EU"
    finally:
        gw.state.close()
        gw.audit.close()


def test_downloads_can_be_denied(tmp_path: Path) -> None:
    import asyncio

    cfg = config_from_mapping(
        {
            "upstreams": {"openai": {"base_url": "https://api.openai.com"}},
            "gateway": {"state_dir": str(tmp_path), "allow_downloads": False},
        }
    )
    seen: list[Any] = []
    gw = create_gateway(
        cfg,
        load_policy_text(POLICY_YAML),
        transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200)),
    )

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app), base_url="http://gw") as c:
            r = await c.get("/openai/v1/files/file-abc123/content", headers={"Authorization": "Bearer t"})
        await gw.aclose()
        return r

    r = asyncio.run(go())
    assert r.status_code == 403 and r.json()["error"]["code"] == "download_not_allowed" and seen == []


@pytest.mark.parametrize(
    ("upstream", "jurisdiction"),
    [
        ({"region": "swedencentral"}, "EU"),
        ({"region": "uksouth"}, "GB"),
        ({"region": "eastus2", "jurisdiction": "US"}, "US"),
        ({"jurisdiction": "EU"}, "EU"),
    ],
)
def test_azure_resource_region_is_the_jurisdiction(tmp_path: Path, upstream: dict[str, str], jurisdiction: str) -> None:
    cfg = config_from_mapping(
        {
            "upstreams": {"az": {"base_url": "https://res1.openai.azure.com", "adapter": "azure_openai", **upstream}},
            "gateway": {"state_dir": str(tmp_path)},
        }
    )
    gw = create_gateway(cfg, load_policy_text(POLICY_YAML))
    try:
        assert gw.upstreams["az"].jurisdiction == jurisdiction
    finally:
        gw.state.close()
        gw.audit.close()


@pytest.mark.parametrize(
    ("upstream", "message"),
    [
        ({}, "has no jurisdiction"),
        ({"region": "marsnorth"}, "region 'marsnorth' is not one"),
        ({"region": "swedencentral", "jurisdiction": "US"}, "contradicts region swedencentral"),
    ],
)
def test_azure_needs_a_known_region_or_a_jurisdiction(tmp_path: Path, upstream: dict[str, str], message: str) -> None:
    from bastion.errors import ConfigError

    cfg = config_from_mapping(
        {
            "upstreams": {"az": {"base_url": "https://res1.openai.azure.com", "adapter": "azure_openai", **upstream}},
            "gateway": {"state_dir": str(tmp_path)},
        }
    )
    with pytest.raises(ConfigError, match=message):
        create_gateway(cfg, load_policy_text(POLICY_YAML))


def test_a_route_shadowed_by_an_earlier_one_is_rejected() -> None:
    """A custom-method suffix (``{job}:cancel``) listed after ``{job}`` could never be matched."""
    ids = {"job": r"[a-z0-9-]{1,63}"}
    get, cancel = RouteSpec("POST", "/v1/jobs/{job}", "jobs.update"), RouteSpec("POST", "/v1/jobs/{job}:cancel", "c")
    with pytest.raises(ValueError, match=r"route c \(/v1/jobs/\{job\}:cancel\) is shadowed by jobs.update"):
        ProviderSpec(name="shadow", ids=ids, routes=(get, cancel))
    spec = ProviderSpec(name="ordered", ids=ids, routes=(cancel, get))  # the specific form first: both reachable
    assert [spec.match("POST", p).route.name for p in ("/v1/jobs/j1:cancel", "/v1/jobs/j1")] == ["c", "jobs.update"]
