"""Fixtures: a real local OpenAI stand-in and the real gateway, both under uvicorn on 127.0.0.1."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bastion.gateway.app import Gateway, create_gateway
from bastion.gateway.config import config_from_mapping
from bastion.gateway.serve import ServerThread
from bastion.policies import load_policy_text
from upstream import FakeOpenAI

POLICY_YAML = """
version: 1
name: gateway-tests
classifications: [public, internal, personal, special]
default_classification: internal
detectors:
  - {id: pii.email, type: email, action: redact, classification: personal}
  - {id: pii.phone, type: phone, action: redact, classification: personal, regions: [DE, GB, US]}
  - {id: fin.iban, type: iban, action: block, classification: special}
  - {id: fin.card, type: payment_card, action: block, classification: special}
  - {id: hr.staff-id, type: keywords, entity: STAFF_ID, keywords: [EMP-123456], action: allow, classification: personal}
upstreams:
  - {id: openai, jurisdiction: US}
  - {id: offshore, jurisdiction: XX}
residency:
  - {id: res.internal-anywhere, classifications: [public, internal], jurisdictions: ["*"]}
  - {id: res.personal-us-eu, classifications: [personal], jurisdictions: [US, EU]}
"""

CLIENT_TOKEN = "sk-client-token-do-not-log-1234567890"
PROVIDER_KEY = "sk-provider-key-held-by-gateway-987654321"


@dataclass
class Env:
    upstream: FakeOpenAI
    upstream_url: str
    gateway: Gateway
    url: str
    state_dir: Path

    def client(self, prefix: str = "openai", **kw: Any) -> openai.OpenAI:
        kw.setdefault("api_key", CLIENT_TOKEN)
        return openai.OpenAI(base_url=f"{self.url}/{prefix}/v1", max_retries=0, timeout=60, **kw)

    def audit_entries(self) -> list[dict[str, Any]]:
        import json

        self.gateway.audit.drain()
        path = self.state_dir / "audit.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="session")
def policy() -> Any:
    return load_policy_text(POLICY_YAML, source="gateway-tests.yaml")


@pytest.fixture(scope="module")
def fake_upstream() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as srv:
        yield fake, srv.url


def make_env(
    tmp: Path, policy: Any, fake: FakeOpenAI, url: str, *, auth: dict[str, Any] | None = None, **settings: Any
) -> tuple[Gateway, ServerThread]:
    cfg = config_from_mapping(
        {
            "upstreams": {
                "openai": {"base_url": url, "jurisdiction": "US", "auth": auth or {"mode": "passthrough"}},
                "offshore": {"base_url": url, "jurisdiction": "XX", "adapter": "openai"},
            },
            "gateway": {"state_dir": str(tmp), "spool_dir": str(tmp / "spool"), **settings},
        }
    )
    gw = create_gateway(cfg, policy, policy_name="gateway-tests.yaml")
    return gw, ServerThread(gw.app).start()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, policy: Any, fake_upstream: tuple[FakeOpenAI, str]) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("gw")
    fake, url = fake_upstream
    gw, srv = make_env(tmp, policy, fake, url, max_upload_bytes=8 * 1024 * 1024, max_line_bytes=1024 * 1024)
    try:
        yield Env(fake, url, gw, srv.url, tmp)
    finally:
        srv.stop()
