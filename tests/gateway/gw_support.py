"""Shared helpers of the gateway tests: the test policy, the environment handle, record builders."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from gw_upstream import FakeOpenAI, parse_multipart

from bastion.gateway.app import Gateway, create_gateway
from bastion.gateway.config import config_from_mapping
from bastion.gateway.serve import ServerThread

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


class AuditLog:
    """The gateway's audit log, for an environment handle with ``gateway`` and ``state_dir`` fields."""

    gateway: Gateway
    state_dir: Path

    def audit_text(self) -> str:
        """Every audit file of the state folder, as text (to look for what must never be written)."""
        self.gateway.audit.drain()
        return "\n".join(p.read_text(errors="replace") for p in self.state_dir.rglob("*.jsonl"))

    def audit_entries(self) -> list[dict[str, Any]]:
        self.gateway.audit.drain()
        return [json.loads(line) for line in (self.state_dir / "audit.jsonl").read_text().splitlines()]


@dataclass
class Env(AuditLog):
    upstream: FakeOpenAI
    upstream_url: str
    gateway: Gateway
    url: str
    state_dir: Path

    def client(self, prefix: str = "openai", **kw: Any) -> openai.OpenAI:
        kw.setdefault("api_key", CLIENT_TOKEN)
        return openai.OpenAI(base_url=f"{self.url}/{prefix}/v1", max_retries=0, timeout=60, **kw)


def make_env(
    tmp: Path,
    policy: Any,
    fake: FakeOpenAI,
    url: str,
    *,
    auth: dict[str, Any] | None = None,
    extra_upstreams: dict[str, Any] | None = None,
    **settings: Any,
) -> tuple[Gateway, ServerThread]:
    upstreams = {
        "openai": {"base_url": url, "jurisdiction": "US", "auth": auth or {"mode": "passthrough"}},
        "offshore": {"base_url": url, "jurisdiction": "XX", "adapter": "openai"},
        **(extra_upstreams or {}),
    }
    return start_gateway(tmp, policy, upstreams, spool_dir=str(tmp / "spool"), **settings)


def start_gateway(tmp: Path, policy: Any, upstreams: dict[str, Any], **settings: Any) -> tuple[Gateway, ServerThread]:
    """A gateway over ``upstreams`` with the test policy, its state in ``tmp``, served on 127.0.0.1."""
    cfg = config_from_mapping({"upstreams": upstreams, "gateway": {"state_dir": str(tmp), **settings}})
    gw = create_gateway(cfg, policy, policy_name="gateway-tests.yaml")
    return gw, ServerThread(gw.app).start()


EMAIL = "jane.roe@example.org"
IBAN = "DE89370400440532013000"


def chat(user: str, assistant: str = "ok") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


def jsonl(*records: Any) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def uploaded(env: Env, n_before: int) -> list[bytes]:
    """File contents that arrived upstream after the first n_before calls."""
    out = []
    for rec in env.upstream.received[n_before:]:
        if rec.method == "POST" and rec.path == "/v1/files":
            out.append(parse_multipart(rec.headers["content-type"], rec.body)["file"][1])
    return out


def self_signed(
    tmp: Path,
    dns_names: Sequence[str] = (),
    *,
    common_name: str = "127.0.0.1",
    files: tuple[str, str] = ("cert.pem", "key.pem"),
) -> tuple[Path, Path]:
    """A self-signed CA certificate (P-256, one day) for 127.0.0.1 and ``dns_names``, and its key: PEM files in tmp."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName(
        [*(x509.DNSName(n) for n in dns_names), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(san, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / files[0], tmp / files[1]
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path
