"""bastion.gateway.presigned: which upload URLs the gateway sends scanned bytes to; gateway URLs; capabilities."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from starlette.requests import Request

from bastion.gateway.config import UpstreamConfig
from bastion.gateway.errors import Refusal
from bastion.gateway.presigned import capability_ok, check_upload_url, gateway_url, new_capability
from bastion.gateway.proxy import Upstream

S3 = (r"[a-z0-9][a-z0-9.-]{0,62}\.s3[.-]([a-z0-9-]+\.)?amazonaws\.com",)


def _ex(**hosts: str) -> Any:
    up = Upstream("t", UpstreamConfig(base_url="https://api.together.ai", hosts=hosts), jurisdiction="US")
    return SimpleNamespace(upstream=up)


@pytest.mark.parametrize(
    "url",
    [
        "https://bucket.s3.us-west-2.amazonaws.com/key?X-Amz-Signature=abc",
        "https://bucket.s3.amazonaws.com/key",
        "http://127.0.0.1:9000/bucket/key?sig=1",  # the configured hosts.uploads origin, any scheme it has
    ],
)
def test_provider_store_and_configured_origin_are_accepted(url: str) -> None:
    assert check_upload_url(_ex(uploads="http://127.0.0.1:9000"), url, S3).host


@pytest.mark.parametrize(
    "url",
    [
        "http://bucket.s3.amazonaws.com/key",  # plain http to the provider's store
        "https://bucket.s3.amazonaws.com.evil.example/key",  # a suffix trick
        "https://user:pw@bucket.s3.amazonaws.com/key",  # credentials in the URL
        "http://127.0.0.1:9001/bucket/key",  # another port than the configured origin
        "https://169.254.169.254/latest/meta-data",
        "/relative/path",
        "",
        None,
    ],
)
def test_other_hosts_are_refused_without_quoting_the_url(url: str | None) -> None:
    with pytest.raises(Refusal) as info:
        check_upload_url(_ex(uploads="http://127.0.0.1:9000"), url, S3)
    assert info.value.status == 502 and info.value.kind == "upload_host_not_allowed"
    assert "key" not in info.value.client_message and "pw" not in info.value.client_message


def test_gateway_url_uses_the_host_the_client_reached() -> None:
    scope = {"type": "http", "method": "POST", "path": "/t/v1/files", "headers": [(b"host", b"gw.example:8443")],
             "scheme": "https", "server": ("10.0.0.1", 8443), "query_string": b"", "root_path": ""}  # fmt: skip
    url = gateway_url(Request(scope), "/t/bastion/uploads/u1", [("sig", "a b")])
    assert url == "https://gw.example:8443/t/bastion/uploads/u1?sig=a+b"


def test_capability_is_checked_against_its_digest_only() -> None:
    secret, digest = new_capability()
    assert secret not in digest and capability_ok(secret, digest)
    assert not capability_ok(secret[:-1] + ("A" if secret[-1] != "A" else "B"), digest)
