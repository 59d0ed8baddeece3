"""bastion.gateway.presigned: which upload URLs the gateway sends scanned bytes to; gateway URLs; tickets."""

from __future__ import annotations

import asyncio
import re
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from starlette.requests import Request

from bastion.gateway.config import UpstreamConfig
from bastion.gateway.errors import Refusal
from bastion.gateway.inbound import check_opaque
from bastion.gateway.presigned import (
    TICKET,
    check_upload_url,
    gateway_url,
    new_ticket,
    same_origin,
    send,
    ticket_matches,
)
from bastion.gateway.proxy import Upstream
from bastion.gateway.spec import BearerAuth
from bastion.policies import load_policy
from bastion.policies.engine import PolicyEngine

S3 = (r"[a-z0-9][a-z0-9.-]{0,62}\.s3[.-]([a-z0-9-]+\.)?amazonaws\.com",)


def _up(**hosts: str) -> Upstream:
    return Upstream("t", UpstreamConfig(base_url="https://api.together.ai", hosts=hosts), jurisdiction="US")


def _strict(url: object, **hosts: str) -> Any:
    """Together's policy: https to the provider's stores, or the configured hosts.uploads origin."""
    return check_upload_url(_up(**hosts), url, what="the file creation", store_hosts=S3)


def _any_https(url: object, **hosts: str) -> Any:
    """The Hub's policy: any https host, plain http only to an origin the upstream's configuration names."""
    return check_upload_url(_up(**hosts), url, what="the LFS batch request", store_hosts=None, hosts_key=None)


@pytest.mark.parametrize(
    "url",
    [
        "https://bucket.s3.us-west-2.amazonaws.com/key?X-Amz-Signature=abc",
        "https://bucket.s3.amazonaws.com/key",
        "http://127.0.0.1:9000/bucket/key?sig=1",  # the configured hosts.uploads origin, any scheme it has
    ],
)
def test_provider_store_and_configured_origin_are_accepted(url: str) -> None:
    assert _strict(url, uploads="http://127.0.0.1:9000").host


@pytest.mark.parametrize(
    "url",
    [
        "http://bucket.s3.amazonaws.com/key",  # plain http to the provider's store
        "https://bucket.s3.amazonaws.com.evil.example/key",  # a suffix trick
        "https://user:pw@bucket.s3.amazonaws.com/key",  # credentials in the URL
        "http://127.0.0.1:9001/bucket/key",  # another port than the configured origin
        "https://169.254.169.254/latest/meta-data",
        "ftp://127.0.0.1:9000/bucket/key",
        "/relative/path",
        "",
        None,
        12,
    ],
)
def test_other_hosts_are_refused_without_quoting_the_url(url: object) -> None:
    with pytest.raises(Refusal) as info:
        _strict(url, uploads="http://127.0.0.1:9000")
    assert info.value.status == 502 and info.value.kind == "upload_host_not_allowed"
    assert "key" not in info.value.client_message and "pw" not in info.value.client_message
    assert "hosts.uploads" in info.value.client_message  # where the operator can name a store


def test_any_https_policy_takes_https_anywhere_and_plain_http_only_to_named_origins() -> None:
    hosts = {"lfs_store": "http://127.0.0.1:9000"}
    assert _any_https("https://s3.example.net/obj?X-Amz-Signature=s", **hosts).host == "s3.example.net"
    assert _any_https("http://127.0.0.1:9000/obj", **hosts).port == 9000  # a hosts entry
    assert _any_https("https://api.together.ai:443/verify", **hosts).host  # base_url, default port spelled out
    for url in ("http://127.0.0.1:9001/sekrit", "http://s3.example.net/sekrit", "https://u:p@s3.example.net/o", "x"):
        with pytest.raises(Refusal) as info:
            _any_https(url, **hosts)
        assert info.value.status == 502 and info.value.kind == "upload_host_not_allowed"
        assert "sekrit" not in info.value.client_message and "u:p" not in info.value.client_message
    with pytest.raises(Refusal) as info:
        _any_https("http://10.1.2.3/obj", **hosts)
    assert "plain-http upload URL on host '10.1.2.3'" in info.value.client_message


def test_a_single_configured_origin_with_a_default() -> None:
    """Fireworks' policy: only the origin of hosts.signed_urls, or the default when it is not configured."""

    def check(url: str, **hosts: str) -> Any:
        return check_upload_url(
            _up(**hosts),
            url,
            what="x",
            store_hosts=(),
            hosts_key="signed_urls",
            default_origin="https://storage.googleapis.com",
        )

    assert check("https://storage.googleapis.com/b/o?X-Goog-Signature=s").host == "storage.googleapis.com"
    assert check("http://127.0.0.1:9000/b/o", signed_urls="http://127.0.0.1:9000").port == 9000
    for url, hosts in [
        ("https://storage.googleapis.com/b/o", {"signed_urls": "http://127.0.0.1:9000"}),  # configured: no default
        ("http://storage.googleapis.com/b/o", {}),
        ("https://evil.example/b/o", {}),
    ]:
        with pytest.raises(Refusal) as info:
            check(url, **hosts)
        assert "hosts.signed_urls (default https://storage.googleapis.com)" in info.value.client_message


def _request(host: bytes, root_path: str = "") -> Request:
    scope = {"type": "http", "method": "POST", "path": "/t/v1/files", "headers": [(b"host", host)],
             "scheme": "https", "server": ("10.0.0.1", 8443), "query_string": b"", "root_path": root_path}  # fmt: skip
    return Request(scope)


def test_gateway_url_uses_the_host_the_client_reached() -> None:
    url = gateway_url(_request(b"gw.example:8443"), "t", "/bastion/uploads/u1", [("sig", "a b")])
    assert url == "https://gw.example:8443/t/bastion/uploads/u1?sig=a+b"
    assert gateway_url(_request(b"[::1]:8443", "/egress/"), "hf", "") == "https://[::1]:8443/egress/hf"


@pytest.mark.parametrize(
    "host",
    [b"", b"evil.example/x?", b"a@b", b"gw.example:8443 x", b"gw.example:port", b"gw:99999", b"gw:0", b"[:::::]"],
)
def test_gateway_url_refuses_a_host_header_that_is_not_a_plain_host(host: bytes) -> None:
    with pytest.raises(Refusal) as info:
        gateway_url(_request(host), "t", "/bastion/uploads/u1")
    assert info.value.status == 400 and info.value.kind == "invalid_header"


def test_ticket_is_checked_against_its_digest_only() -> None:
    ticket, digest = new_ticket()
    assert re.fullmatch(TICKET, ticket) and ticket not in digest and ticket_matches(ticket, digest)
    assert not ticket_matches(ticket[:-1] + ("a" if ticket[-1] != "a" else "b"), digest)
    assert not ticket_matches(ticket, None) and not ticket_matches(ticket, "") and not ticket_matches(ticket, 1)
    assert len({new_ticket()[0] for _ in range(1000)}) == 1000


def test_tickets_have_no_digits_so_the_personal_data_scan_of_path_ids_never_trips_on_one() -> None:
    """Hex or base64 tickets now and then hold a digit run that reads as a card or id number (a random 400)."""
    engine = PolicyEngine(load_policy("pack:eu-gdpr"))
    tickets = [new_ticket()[0] for _ in range(100)]
    assert not any(c.isdigit() for t in tickets for c in t)
    for ticket in tickets:
        check_opaque(engine, {"ticket": ticket}, "path id", "x.upload")  # raises on a finding


def test_same_origin_fills_in_default_ports() -> None:
    assert same_origin(httpx.URL("https://Hub.example:443/x"), "https://hub.example")
    assert not same_origin(httpx.URL("http://hub.example/x"), "https://hub.example")
    assert not same_origin(httpx.URL("https://hub.example:8443/x"), "https://hub.example")


class _Audit:
    def __init__(self, up: bool) -> None:
        self.up, self.calls = up, 0

    async def ensure_available(self) -> None:
        self.calls += 1
        if not self.up:
            raise Refusal(503, "audit_unavailable", "the audit log is unavailable")


def _send_env(handler: Any, *, audit_up: bool = True) -> tuple[Any, Any, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    up = Upstream(
        "hf",
        UpstreamConfig(base_url="https://hub.example", hosts={}),
        jurisdiction="US",
        transport=httpx.MockTransport(record),
    )
    return SimpleNamespace(audit=_Audit(audit_up)), SimpleNamespace(upstream=up, forwarded=False), seen


def test_send_adds_no_credential_to_a_store_and_the_api_auth_only_on_the_api_origin() -> None:
    gw, ex, seen = _send_env(lambda r: httpx.Response(200, headers={"etag": '"e1"'}, content=b"ok"))
    auth = BearerAuth("hf_secret")
    store = httpx.URL("https://store.example/o?X-Amz-Signature=s")
    resp, body = asyncio.run(send(gw, ex, "PUT", store, content=b"data", api_auth=auth, what="the upload"))
    assert resp.status_code == 200 and resp.headers["etag"] == '"e1"' and body == b"ok"
    assert "authorization" not in seen[0].headers and seen[0].headers["content-length"] == "4"
    assert ex.forwarded and gw.audit.calls == 1
    asyncio.run(send(gw, ex, "POST", httpx.URL("https://hub.example/verify"), content=b"{}", api_auth=auth))
    assert seen[1].headers["authorization"] == "Bearer hf_secret"
    assert gw.audit.calls == 1  # already forwarded: the audit log was checked before the first byte left


def test_send_sends_nothing_while_the_audit_log_is_down() -> None:
    gw, ex, seen = _send_env(lambda r: httpx.Response(200), audit_up=False)
    with pytest.raises(Refusal) as info:
        asyncio.run(send(gw, ex, "PUT", httpx.URL("https://store.example/o"), content=b"data"))
    assert info.value.kind == "audit_unavailable" and seen == [] and not ex.forwarded


def test_send_reads_a_bounded_answer_and_names_transport_failures() -> None:
    gw, ex, _ = _send_env(lambda r: httpx.Response(200, content=b"x" * 2048))
    with pytest.raises(Refusal) as info:
        asyncio.run(send(gw, ex, "PUT", httpx.URL("https://store.example/o"), content=b"d", max_answer=1024))
    assert info.value.status == 502 and "larger than 1024 bytes" in info.value.client_message

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)

    gw, ex, _ = _send_env(refuse)
    with pytest.raises(Refusal) as info:
        asyncio.run(send(gw, ex, "PUT", httpx.URL("https://store.example/o?sig=s3cr3t"), content=b"d", what="the PUT"))
    assert info.value.kind == "upload_store_unreachable" and "nothing was sent" in info.value.client_message
    assert "s3cr3t" not in info.value.client_message
