"""bastion.provenance.verify.verify(): trust inputs, report shape, and malformed records."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.errors import InputError
from bastion.provenance.signing import KeyPair, SigningConfig, sign_run
from bastion.provenance.signing.testing import TestPKI
from bastion.provenance.verify import verify


def key_signed(run_dir: Callable[..., Path], keys: KeyPair, **kwargs: object) -> Path:
    out = run_dir(**kwargs)
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    return out


def cert_signed(run_dir: Callable[..., Path], pki: TestPKI, chain: tuple[Path, ...] | None = None) -> Path:
    out = run_dir()
    chain = (pki.intermediate_cert,) if chain is None else chain
    sign_run(
        out,
        SigningConfig(
            backend="certificate", private_key=pki.leaf_key, certificate=pki.leaf_cert, certificate_chain=chain
        ),
    )
    return out


def test_report_of_a_good_run(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    report = verify(key_signed(run_dir, keys), public_key=keys.public_key)
    assert report.ok and report.failures == [] and report.lines() == []
    assert report.passed == ["signature", "statement", "subjects", "model_signature", "ledger"]
    assert report.files == 4
    data = json.loads(json.dumps(report.as_dict()))
    assert data["ok"] is True and data["run_id"] == "run-0001"
    assert data["signer"] == {"type": "key", "fingerprint": keys.fingerprint}


def test_key_identity_is_the_fingerprint(run_dir: Callable[..., Path], keys: KeyPair, other_keys: KeyPair) -> None:
    out = key_signed(run_dir, keys)
    assert verify(out, public_key=[keys.public_key], identity=keys.fingerprint).ok
    report = verify(out, public_key=[keys.public_key, other_keys.public_key], identity=other_keys.fingerprint)
    assert "identity.mismatch" in report.reasons()


def test_several_trusted_keys(run_dir: Callable[..., Path], keys: KeyPair, other_keys: KeyPair) -> None:
    out = key_signed(run_dir, keys)
    assert verify(out, public_key=[other_keys.public_key, keys.public_key]).ok
    assert verify(out, public_key=other_keys.public_key).reasons() == {
        "signature.untrusted_key",
        "model_signature.signature.untrusted_key",
    }


def test_trust_must_be_given_and_match_the_bundle_kind(
    run_dir: Callable[..., Path], keys: KeyPair, pki: TestPKI
) -> None:
    out = key_signed(run_dir, keys)
    assert "trust.missing" in verify(out).reasons()
    report = verify(out, certificate_chain=[pki.root_cert])
    assert "trust.missing" in report.reasons()
    assert any("--key" in line for line in report.lines())
    cert_out = cert_signed(run_dir, pki)
    report = verify(cert_out, public_key=keys.public_key)
    assert "trust.missing" in report.reasons()
    assert any("--certificate-chain" in line for line in report.lines())


def test_certificate_identity_and_issuer_checks(run_dir: Callable[..., Path], pki: TestPKI) -> None:
    out = cert_signed(run_dir, pki)
    assert verify(out, certificate_chain=[pki.root_cert], identity=pki.leaf_email).ok
    assert verify(out, certificate_chain=[pki.root_cert], identity="CN=ml-release,O=Acme").ok
    report = verify(out, certificate_chain=[pki.root_cert], identity="someone@acme.example")
    assert "identity.mismatch" in report.reasons()
    line = next(f for f in report.failures if f.check == "identity.mismatch")
    assert line.expected == "someone@acme.example" and pki.leaf_email in (line.found or "")
    wrong_issuer = verify(out, certificate_chain=[pki.root_cert], issuer="CN=Other CA")
    assert "identity.mismatch" in wrong_issuer.reasons()


def test_intermediate_may_come_from_the_verifier(run_dir: Callable[..., Path], pki: TestPKI) -> None:
    out = cert_signed(run_dir, pki, chain=())
    assert verify(out, certificate_chain=[pki.root_cert, pki.intermediate_cert]).ok
    assert "certificate.untrusted" in verify(out, certificate_chain=[pki.root_cert]).reasons()


def test_certificate_checked_at_verification_time(run_dir: Callable[..., Path], pki: TestPKI) -> None:
    out = cert_signed(run_dir, pki)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=400)
    assert "certificate.expired" in verify(out, certificate_chain=[pki.root_cert], now=later).reasons()


def test_missing_or_unsigned_artifacts(run_dir: Callable[..., Path], keys: KeyPair, tmp_path: Path) -> None:
    assert verify(tmp_path / "nope", public_key=keys.public_key).reasons() == {"record.missing"}
    unsigned = run_dir("unsigned")
    report = verify(unsigned, public_key=keys.public_key)
    assert "record.missing" in report.reasons() and not report.ok
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "record.missing" in verify(empty, public_key=keys.public_key).reasons()


def test_garbage_bundle(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    out = key_signed(run_dir, keys)
    (out / "bastion/statement.sigstore.json").write_text('{"mediaType": "nope"}')
    report = verify(out, public_key=keys.public_key)
    assert "bundle.invalid" in report.reasons()
    (out / "bastion/statement.sigstore.json").write_bytes(b"\xff\xfe")
    assert "bundle.invalid" in verify(out, public_key=keys.public_key).reasons()


def test_ledger_path_must_stay_inside_the_artifact(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    out = run_dir()
    path = out / "bastion/statement.json"
    st = json.loads(path.read_text())
    st["predicate"]["ledger"]["path"] = "../../etc/passwd"
    path.write_text(json.dumps(st, indent=2, sort_keys=True) + "\n")
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    report = verify(out, public_key=keys.public_key)
    assert report.reasons() == {"ledger.missing"}
    assert "outside the artifact" in report.lines()[0]


def test_missing_ledger(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    out = key_signed(run_dir, keys)
    (out / "bastion/ledger.jsonl").unlink()
    assert verify(out, public_key=keys.public_key).reasons() == {"ledger.missing"}


def test_bad_trust_arguments_raise(run_dir: Callable[..., Path], keys: KeyPair, tmp_path: Path) -> None:
    out = key_signed(run_dir, keys)
    with pytest.raises(InputError, match="public key not found"):
        verify(out, public_key=tmp_path / "missing.pub")
    (tmp_path / "ca.pem").write_text("nope")
    with pytest.raises(InputError, match="no valid PEM certificate"):
        verify(out, certificate_chain=tmp_path / "ca.pem")
