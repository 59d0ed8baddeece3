"""RFC 3161 timestamps: a run signed with a short-lived certificate still verifies after the certificate
expires, because a real TSA (on 127.0.0.1) proved when it was signed.

Expiry is simulated without sleeping: signing happens now with a certificate valid for a few minutes,
verification passes ``now`` a month later; the "signed too late" case uses a certificate whose validity
ended yesterday.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.cli.main import cli
from bastion.errors import ConfigError, SigningError
from bastion.provenance.signing import KeyPair, SigningConfig, sign_run
from bastion.provenance.signing.run import MODEL_SIGNATURE_NAME, STATEMENT_BUNDLE_NAME
from bastion.provenance.signing.testing import _name, issue_certificate, write_cert, write_key
from bastion.provenance.statement import RECORD_DIR
from bastion.provenance.verify import trust_material, verify
from bastion.provenance.verify.trust import Trust
from tests.provenance.tsa import LocalTSA, TsaPKI, make_tsa_pki, serve_tsa

NOW = dt.datetime.now(dt.UTC)
MONTH_LATER = NOW + dt.timedelta(days=30)


@dataclass(frozen=True)
class ShortLivedCA:
    """A test CA (root only) and leaves issued by it with chosen validity windows."""

    root_pem: Path
    root_key: ec.EllipticCurvePrivateKey
    directory: Path

    def leaf(self, name: str, not_before: dt.datetime, not_after: dt.datetime) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = issue_certificate(
            key,
            _name(name, "Acme"),
            self.root_key,
            _name("Acme Short-Lived CA", "Acme"),
            ca=False,
            email="ml-release@acme.example",
            not_before=not_before,
            not_after=not_after,
        )
        return write_key(key, self.directory / f"{name}.key"), write_cert(cert, self.directory / f"{name}.pem")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> ShortLivedCA:
    d = tmp_path_factory.mktemp("short-lived-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Acme Short-Lived CA", "Acme")
    root = issue_certificate(
        key,
        name,
        key,
        name,
        ca=True,
        path_length=0,
        not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=3650),
    )
    return ShortLivedCA(root_pem=write_cert(root, d / "root.pem"), root_key=key, directory=d)


@pytest.fixture(scope="module")
def tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPKI:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture(scope="module")
def rogue_tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPKI:
    return make_tsa_pki(tmp_path_factory.mktemp("rogue-tsa"), "Mallory")


@pytest.fixture
def tsa(tsa_pki: TsaPKI) -> Iterator[LocalTSA]:
    with serve_tsa(LocalTSA(tsa_pki)) as server:
        yield server


@pytest.fixture
def short_leaf(ca: ShortLivedCA) -> tuple[Path, Path]:
    """Valid from a minute ago for half an hour, from when the test starts (the suite may reach this module
    long after it was imported): expired long before MONTH_LATER."""
    now = dt.datetime.now(dt.UTC)
    return ca.leaf("short", now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=30))


def cert_signing(leaf: tuple[Path, Path], tsa: LocalTSA | None, tsa_root: Path | None = None) -> SigningConfig:
    mapping: dict[str, object] = {"backend": "certificate", "private_key": str(leaf[0]), "certificate": str(leaf[1])}
    if tsa is not None:
        mapping["tsa_url"] = tsa.url
        mapping["tsa_certificate_chain"] = [str(tsa_root or tsa.pki.root_pem)]
    return SigningConfig.from_mapping(mapping)


def bundle_json(out: Path, name: str = STATEMENT_BUNDLE_NAME) -> dict[str, object]:
    return json.loads((out / RECORD_DIR / name).read_text())


def tokens(out: Path, name: str = STATEMENT_BUNDLE_NAME) -> list[str]:
    data = bundle_json(out, name)
    return [
        t["signedTimestamp"] for t in data["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    ]  # type: ignore[index]


def test_timestamped_certificate_run_verifies_after_the_certificate_expired(
    run_dir: Callable[..., Path],
    ca: ShortLivedCA,
    short_leaf: tuple[Path, Path],
    tsa: LocalTSA,
    tsa_pki: TsaPKI,
) -> None:
    out = run_dir()
    signed = sign_run(out, cert_signing(short_leaf, tsa))
    assert signed.timestamp_authority == tsa.url
    assert tsa.requests == 2  # the statement bundle and the OpenSSF model signature
    # Stored in the Sigstore bundle's own field, one token per bundle.
    assert len(tokens(out)) == 1 and len(tokens(out, MODEL_SIGNATURE_NAME)) == 1

    report = verify(out, certificate_chain=[ca.root_pem], tsa_certificate_chain=[tsa_pki.root_pem], now=MONTH_LATER)
    assert report.ok, report.lines()
    assert "timestamp" in report.passed and "model_signature" in report.passed
    proven = dt.datetime.fromisoformat(report.timestamps[f"{RECORD_DIR}/{STATEMENT_BUNDLE_NAME}"]["time"])
    assert NOW - dt.timedelta(minutes=1) <= proven <= dt.datetime.now(dt.UTC)
    assert report.timestamps[f"{RECORD_DIR}/{MODEL_SIGNATURE_NAME}"]["tsa"].startswith("CN=Acme Time Stamping")

    # Without the TSA roots the same run fails, and the message says what would make it pass.
    plain = verify(out, certificate_chain=[ca.root_pem], now=MONTH_LATER)
    assert "certificate.expired" in plain.reasons()
    assert "--tsa-certificate-chain" in plain.lines()[0]


def test_timestamped_model_signature_still_passes_the_stock_verifier(
    run_dir: Callable[..., Path],
    ca: ShortLivedCA,
    tsa: LocalTSA,
    stock_verify: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    leaf = ca.leaf("stock", NOW - dt.timedelta(minutes=1), NOW + dt.timedelta(days=1))
    out = run_dir()
    sign_run(out, cert_signing(leaf, tsa))
    sig = out / RECORD_DIR / MODEL_SIGNATURE_NAME
    result = stock_verify("certificate", str(out), "--signature", str(sig), "--certificate_chain", str(ca.root_pem))
    assert result.returncode == 0, result.stderr


def test_expired_certificate_without_timestamp_fails_with_a_clear_message(
    run_dir: Callable[..., Path], ca: ShortLivedCA, short_leaf: tuple[Path, Path], tsa_pki: TsaPKI
) -> None:
    out = run_dir()
    sign_run(out, cert_signing(short_leaf, None))
    assert verify(out, certificate_chain=[ca.root_pem]).ok  # fine while the certificate is valid
    report = verify(out, certificate_chain=[ca.root_pem], now=MONTH_LATER)
    assert "certificate.expired" in report.reasons()
    assert "carries no RFC 3161 timestamp" in report.lines()[0]
    # Whoever passes TSA roots relies on a timestamp: its absence is named.
    with_tsa = verify(out, certificate_chain=[ca.root_pem], tsa_certificate_chain=[tsa_pki.root_pem])
    assert with_tsa.reasons() == {"timestamp.missing", "model_signature.timestamp.missing"}


def test_timestamp_cannot_rescue_a_signature_made_after_expiry(
    run_dir: Callable[..., Path], ca: ShortLivedCA, tsa: LocalTSA, tsa_pki: TsaPKI
) -> None:
    # Back-dated validity: the certificate ended yesterday, the TSA proves the signature is from today.
    expired = ca.leaf("expired", NOW - dt.timedelta(days=10), NOW - dt.timedelta(days=1))
    out = run_dir()
    sign_run(out, cert_signing(expired, tsa))
    report = verify(out, certificate_chain=[ca.root_pem], tsa_certificate_chain=[tsa_pki.root_pem])
    assert "certificate.expired" in report.reasons()
    assert "made after the signing certificate expired" in report.lines()[0]


def test_timestamp_before_the_certificate_was_issued_fails(
    run_dir: Callable[..., Path], ca: ShortLivedCA, short_leaf: tuple[Path, Path], tsa_pki: TsaPKI
) -> None:
    with serve_tsa(LocalTSA(tsa_pki, clock=lambda: NOW - dt.timedelta(days=2))) as early:
        out = run_dir()
        sign_run(out, cert_signing(short_leaf, early))
    report = verify(out, certificate_chain=[ca.root_pem], tsa_certificate_chain=[tsa_pki.root_pem])
    assert "certificate.not_yet_valid" in report.reasons()


def test_token_over_other_bytes_fails(
    run_dir: Callable[..., Path], ca: ShortLivedCA, short_leaf: tuple[Path, Path], tsa: LocalTSA, tsa_pki: TsaPKI
) -> None:
    out = run_dir()
    sign_run(out, cert_signing(short_leaf, tsa))
    # A genuine token from the trusted TSA, but over the model signature's bytes, moved into the statement bundle.
    bundle = bundle_json(out)
    bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"] = [  # type: ignore[index]
        {"signedTimestamp": tokens(out, MODEL_SIGNATURE_NAME)[0]}
    ]
    (out / RECORD_DIR / STATEMENT_BUNDLE_NAME).write_text(json.dumps(bundle))
    report = verify(out, certificate_chain=[ca.root_pem], tsa_certificate_chain=[tsa_pki.root_pem], now=MONTH_LATER)
    assert "timestamp.invalid" in report.reasons()
    assert any("covers other bytes than this signature" in line for line in report.lines())
    assert "signature" not in report.passed


def test_corrupted_token_fails(
    run_dir: Callable[..., Path], ca: ShortLivedCA, short_leaf: tuple[Path, Path], tsa: LocalTSA, tsa_pki: TsaPKI
) -> None:
    out = run_dir()
    sign_run(out, cert_signing(short_leaf, tsa))
    bundle = bundle_json(out)
    raw = bytearray(base64.b64decode(tokens(out)[0]))
    raw[-10] ^= 0xFF  # inside the TSA's signature
    bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"] = [  # type: ignore[index]
        {"signedTimestamp": base64.b64encode(bytes(raw)).decode()}
    ]
    (out / RECORD_DIR / STATEMENT_BUNDLE_NAME).write_text(json.dumps(bundle))
    report = verify(out, certificate_chain=[ca.root_pem], tsa_certificate_chain=[tsa_pki.root_pem], now=MONTH_LATER)
    assert "timestamp.invalid" in report.reasons()


def test_token_from_an_untrusted_tsa_fails(
    run_dir: Callable[..., Path],
    ca: ShortLivedCA,
    short_leaf: tuple[Path, Path],
    tsa_pki: TsaPKI,
    rogue_tsa_pki: TsaPKI,
) -> None:
    with serve_tsa(LocalTSA(rogue_tsa_pki)) as rogue:
        out = run_dir()
        sign_run(out, cert_signing(short_leaf, rogue))  # the signer trusts the rogue TSA; the verifier does not
    report = verify(out, certificate_chain=[ca.root_pem], tsa_certificate_chain=[tsa_pki.root_pem], now=MONTH_LATER)
    assert "timestamp.invalid" in report.reasons()
    line = next(x for x in report.lines() if x.startswith("timestamp.invalid"))
    assert "not signed by a trusted TSA" in line and "Acme TSA Root CA" in line


def test_signer_refuses_a_reply_that_does_not_chain_to_the_configured_tsa_root(
    run_dir: Callable[..., Path], short_leaf: tuple[Path, Path], tsa: LocalTSA, rogue_tsa_pki: TsaPKI
) -> None:
    out = run_dir()
    with pytest.raises(SigningError, match="does not verify against tsa_certificate_chain"):
        sign_run(out, cert_signing(short_leaf, tsa, tsa_root=rogue_tsa_pki.root_pem))
    assert not (out / RECORD_DIR / STATEMENT_BUNDLE_NAME).exists()
    assert not (out / RECORD_DIR / MODEL_SIGNATURE_NAME).exists()


def test_unreachable_tsa_fails_signing_with_the_url(
    run_dir: Callable[..., Path], short_leaf: tuple[Path, Path], tsa_pki: TsaPKI
) -> None:
    with serve_tsa(LocalTSA(tsa_pki)) as gone:
        url = gone.url
    config = SigningConfig.from_mapping(
        {
            "backend": "certificate",
            "private_key": str(short_leaf[0]),
            "certificate": str(short_leaf[1]),
            "tsa_url": url,
            "tsa_certificate_chain": str(tsa_pki.root_pem),
            "tsa_timeout": 5,
        }
    )
    out = run_dir()
    with pytest.raises(SigningError, match=f"cannot reach the timestamp authority {url}"):
        sign_run(out, config)
    assert not (out / RECORD_DIR / STATEMENT_BUNDLE_NAME).exists()


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"tsa_url": "http://127.0.0.1:9/tsr"}, "tsa_certificate_chain: required with tsa_url"),
        ({"tsa_certificate_chain": ["tsa.pem"]}, "tsa_url: required with tsa_certificate_chain"),
        ({"tsa_url": "tsa.acme.example"}, "tsa_url: must be the http(s):// URL"),
        ({"tsa_url": "http://x/", "tsa_certificate_chain": ["t.pem"], "tsa_timeout": 0}, "tsa_timeout"),
    ],
)
def test_timestamp_config_errors_name_the_key(mapping: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        SigningConfig.from_mapping({"backend": "key", "private_key": "k.pem", **mapping})


def test_sigstore_backend_refuses_tsa_settings() -> None:
    with pytest.raises(ConfigError, match="not used by backend 'sigstore'"):
        SigningConfig.from_mapping(
            {"backend": "sigstore", "tsa_url": "http://127.0.0.1:9/", "tsa_certificate_chain": "t.pem"}
        )


def test_key_signed_run_carries_a_verified_signing_time(
    run_dir: Callable[..., Path], keys: KeyPair, tsa: LocalTSA, tsa_pki: TsaPKI
) -> None:
    out = run_dir()
    config = SigningConfig.from_mapping(
        {
            "backend": "key",
            "private_key": str(keys.private_key),
            "tsa_url": tsa.url,
            "tsa_certificate_chain": [str(tsa_pki.root_pem)],
        }
    )
    sign_run(out, config)
    report = verify(out, public_key=keys.public_key, tsa_certificate_chain=[tsa_pki.root_pem])
    assert report.ok, report.lines()
    assert set(report.timestamps) == {f"{RECORD_DIR}/{STATEMENT_BUNDLE_NAME}", f"{RECORD_DIR}/{MODEL_SIGNATURE_NAME}"}
    # Older verifiers (no TSA roots) still accept it: the token is extra material in a standard field.
    assert verify(out, public_key=keys.public_key).ok


def test_trust_material_names_what_the_verification_trusted_and_used(
    run_dir: Callable[..., Path], ca: ShortLivedCA, short_leaf: tuple[Path, Path], tsa: LocalTSA, tsa_pki: TsaPKI
) -> None:
    out = run_dir()
    sign_run(out, cert_signing(short_leaf, tsa))
    report = verify(out, certificate_chain=[ca.root_pem], tsa_certificate_chain=[tsa_pki.root_pem], now=MONTH_LATER)
    assert report.ok, report.lines()

    def fp(cert: x509.Certificate) -> str:
        return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()

    root = x509.load_pem_x509_certificate(ca.root_pem.read_bytes())
    leaf = x509.load_pem_x509_certificate(short_leaf[1].read_bytes())
    assert [r["fingerprint"] for r in report.trust["ca_roots"]] == [fp(root)]
    assert [r["fingerprint"] for r in report.trust["tsa_roots"]] == [fp(tsa_pki.root)]
    assert report.trust["public_keys"] == []
    # The stored PEM reloads into the same trust (what a registry pins and verifies with later).
    pinned = ca.directory / "pinned-root.pem"
    pinned.write_text(report.trust["ca_roots"][0]["pem"])
    assert verify(out, certificate_chain=[pinned], tsa_certificate_chain=[tsa_pki.root_pem], now=MONTH_LATER).ok
    assert report.trust_used[f"{RECORD_DIR}/{STATEMENT_BUNDLE_NAME}"]["certificate_chain"] == [fp(leaf), fp(root)]
    as_json = report.as_dict()
    assert as_json["trust"]["tsa_roots"][0]["fingerprint"] == fp(tsa_pki.root)
    assert "pem" not in as_json["trust"]["tsa_roots"][0]
    # The same function works on trust built directly (e.g. by a registry before verifying).
    direct = trust_material(Trust.from_args(now=NOW, tsa_certificate_chain=[tsa_pki.root_pem]))
    assert direct["tsa_roots"][0]["fingerprint"] == fp(tsa_pki.root)


def test_cli_sign_and_verify_with_a_tsa(
    run_dir: Callable[..., Path], ca: ShortLivedCA, short_leaf: tuple[Path, Path], tsa: LocalTSA, tsa_pki: TsaPKI
) -> None:
    out = run_dir()
    runner = CliRunner()
    signed = runner.invoke(
        cli,
        [
            "sign",
            str(out),
            "--key",
            str(short_leaf[0]),
            "--certificate",
            str(short_leaf[1]),
            "--tsa-url",
            tsa.url,
            "--tsa-certificate-chain",
            str(tsa_pki.root_pem),
        ],
    )
    assert signed.exit_code == 0, signed.output
    assert f"timestamped by:   {tsa.url}" in signed.output
    result = runner.invoke(
        cli,
        ["verify", str(out), "--certificate-chain", str(ca.root_pem), "--tsa-certificate-chain", str(tsa_pki.root_pem)],
    )
    assert result.exit_code == 0, result.output
    assert "signing time:" in result.output and "Acme Time Stamping Authority" in result.output
