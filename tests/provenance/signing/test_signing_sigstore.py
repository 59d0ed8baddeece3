"""Keyless (Sigstore) signing against a private instance given by a trust configuration file.

No Sigstore instance is reachable from the test machines, so a local HTTP server stands in for the
private deployment's Fulcio: the test proves the real sigstore client code path is taken, up to and
including the certificate request carrying the OIDC token to the *configured* URL, and that the
failure becomes one clear SigningError with nothing written.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
import sigstore

from bastion.errors import ConfigError, SigningError
from bastion.provenance.signing import SigningConfig, sign_run
from bastion.provenance.verify import verify

PUBLIC_TRUSTED_ROOT = (
    Path(sigstore.__file__).parent / "_store" / "https%3A%2F%2Ftuf-repo-cdn.sigstore.dev" / "trusted_root.json"
)


class FakePrivateSigstore:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str | None]] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                seen.append(("GET", self.path, self.headers.get("Authorization")))
                self.send_response(404)
                self.end_headers()

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                seen.append(("POST", self.path, self.headers.get("Authorization")))
                self.send_response(503)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"message": "test double of a private Fulcio"}')

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def trust_config(self, path: Path) -> Path:
        def svc(url: str) -> dict[str, object]:
            return {"url": url, "majorApiVersion": 1, "validFor": {"start": "2024-01-01T00:00:00Z"}, "operator": "acme"}

        config = {
            "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
            "trustedRoot": json.loads(PUBLIC_TRUSTED_ROOT.read_text()),
            "signingConfig": {
                "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
                "caUrls": [svc(self.url)],
                "oidcUrls": [svc(self.url + "/oidc")],
                "rekorTlogUrls": [svc(self.url + "/rekor")],
                "tsaUrls": [],
                "rekorTlogConfig": {"selector": "ANY"},
                "tsaConfig": {"selector": "ANY"},
            },
        }
        path.write_text(json.dumps(config))
        return path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def private_sigstore() -> Iterator[FakePrivateSigstore]:
    server = FakePrivateSigstore()
    try:
        yield server
    finally:
        server.close()


def oidc_token(issuer: str, email: str = "ci@acme.example") -> str:
    now = int(time.time())
    claims = {"iss": issuer, "aud": "sigstore", "sub": email, "email": email, "email_verified": True}
    return jwt.encode({**claims, "iat": now, "nbf": now, "exp": now + 600}, "k" * 32, algorithm="HS256")


def test_private_instance_is_used_with_the_token_and_failure_is_clean(
    private_sigstore: FakePrivateSigstore,
    run_dir: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = oidc_token(private_sigstore.url + "/oidc")
    monkeypatch.setenv("BASTION_TEST_OIDC_TOKEN", token)
    trust = private_sigstore.trust_config(tmp_path / "private-sigstore.json")
    cfg = SigningConfig.from_mapping(
        {"backend": "sigstore", "trust_config": str(trust), "identity_token_env": "BASTION_TEST_OIDC_TOKEN"},
        source="train.yaml: bastion.signing",
    )
    out = run_dir()
    with pytest.raises(SigningError) as err:
        sign_run(out, cfg)
    message = str(err.value)
    assert f"Fulcio {private_sigstore.url}" in message and "503" in message
    assert token not in message
    # The certificate request went to the private Fulcio, carrying the OIDC token.
    assert ("POST", "/api/v2/signingCert", f"Bearer {token}") in private_sigstore.requests
    assert sorted(p.name for p in (out / "bastion").iterdir()) == ["ledger.jsonl", "statement.json"]


def test_signer_reports_the_private_urls_and_identity(
    private_sigstore: FakePrivateSigstore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_TEST_OIDC_TOKEN", oidc_token(private_sigstore.url + "/oidc", "ml@acme.example"))
    trust = private_sigstore.trust_config(tmp_path / "tc.json")
    signer = SigningConfig(
        backend="sigstore", trust_config=trust, identity_token_env="BASTION_TEST_OIDC_TOKEN"
    ).signer()
    urls = signer.signing_urls()  # type: ignore[attr-defined]
    assert urls["fulcio"] == private_sigstore.url and urls["oidc"] == private_sigstore.url + "/oidc"
    signer.identity_token()  # type: ignore[attr-defined]
    assert signer.identity == {
        "type": "sigstore",
        "identity": "ml@acme.example",
        "issuer": private_sigstore.url + "/oidc",
    }
    assert private_sigstore.requests == []  # building the signer and reading the token touch no network


def test_unreachable_private_instance_is_a_signing_error(
    run_dir: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = FakePrivateSigstore()
    trust = server.trust_config(tmp_path / "tc.json")
    url = server.url
    server.close()  # nothing listens there any more
    monkeypatch.setenv("BASTION_TEST_OIDC_TOKEN", oidc_token(url + "/oidc"))
    with pytest.raises(SigningError, match=f"Fulcio {url}"):
        sign_run(
            run_dir(),
            SigningConfig(backend="sigstore", trust_config=trust, identity_token_env="BASTION_TEST_OIDC_TOKEN"),
        )


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("{not json", "not a Sigstore ClientTrustConfig"), ('{"mediaType": "x"}', "not a Sigstore ClientTrustConfig")],
)
def test_bad_trust_config_is_a_config_error_naming_the_key(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "tc.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=f"trust_config: {path}.*{fragment}"):
        SigningConfig(backend="sigstore", trust_config=path).signer()
    with pytest.raises(ConfigError, match=r"trust_config: .* not found"):
        SigningConfig(backend="sigstore", trust_config=tmp_path / "missing.json").signer()


def test_missing_token_variable_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_TEST_NO_SUCH_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="identity_token_env: environment variable BASTION_TEST_NO_SUCH_TOKEN"):
        SigningConfig(backend="sigstore", identity_token_env="BASTION_TEST_NO_SUCH_TOKEN").signer()


def test_verifying_a_keyless_bundle_needs_identity_and_issuer(run_dir: Callable[..., Path], tmp_path: Path) -> None:
    """A keyless-style bundle (a bare leaf certificate) goes to sigstore's verifier, which needs an identity."""
    from bastion.provenance.signing.testing import make_test_pki

    out = run_dir()
    pki = make_test_pki(tmp_path / "pki")
    # Build a structurally valid keyless-style bundle: v0.3 "certificate" verification material.
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    leaf = x509.load_pem_x509_certificate(pki.leaf_cert.read_bytes())
    statement = (out / "bastion/statement.json").read_bytes()
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "certificate": {"rawBytes": base64.b64encode(leaf.public_bytes(serialization.Encoding.DER)).decode()},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64.b64encode(b"x" * 64).decode()}],
        },
    }
    (out / "bastion/statement.sigstore.json").write_text(json.dumps(bundle))
    report = verify(out, require_model_signature=False)
    assert "trust.missing" in report.reasons()
    assert any("--identity and --issuer" in line for line in report.lines())
