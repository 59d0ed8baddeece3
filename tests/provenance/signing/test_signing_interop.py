"""Signed output directories verify with the stock OpenSSF model_signing verifier, and our statement
bundles verify with sigstore's and model_signing's own DSSE/bundle verification code."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import verifying as ms_verifying
from model_signing._signing import sign_certificate as ms_certificate
from model_signing._signing import sign_ec_key as ms_ec_key
from model_signing._signing import sign_sigstore_pb as ms_pb
from sigstore import dsse
from sigstore_models.intoto import Envelope as EnvelopeModel

from bastion.errors import ConfigError, SigningError
from bastion.provenance.signing import KeyPair, SigningConfig, generate_key_pair, sign_directory, sign_run
from bastion.provenance.signing.testing import TestPKI, write_key
from bastion.provenance.verify import verify

Stock = Callable[..., subprocess.CompletedProcess[str]]


def key_cfg(keys: KeyPair, **kw: object) -> SigningConfig:
    return SigningConfig(backend="key", private_key=keys.private_key, **kw)  # type: ignore[arg-type]


def cert_cfg(pki: TestPKI) -> SigningConfig:
    return SigningConfig(
        backend="certificate",
        private_key=pki.leaf_key,
        certificate=pki.leaf_cert,
        certificate_chain=(pki.intermediate_cert,),
    )


def test_key_signed_run_passes_the_stock_cli_one_liner_and_fails_after_tampering(
    run_dir: Callable[..., Path], keys: KeyPair, stock_verify: Stock
) -> None:
    out = run_dir()
    signed = sign_run(out, key_cfg(keys))
    assert signed.model_signature == out / "bastion" / "model.sig"
    # The documented one-liner: no --ignore-paths needed, bastion/ is recorded in the signature itself.
    ok = stock_verify("key", str(out), "--signature", str(signed.model_signature), "--public_key", str(keys.public_key))
    assert ok.returncode == 0, ok.stderr
    assert "Verification succeeded" in ok.stdout

    (out / "nested" / "README.md").write_text("# changed\n")
    bad = stock_verify(
        "key", str(out), "--signature", str(signed.model_signature), "--public_key", str(keys.public_key)
    )
    assert bad.returncode == 1
    assert "nested/README.md" in bad.stderr


def test_key_signed_run_passes_the_stock_python_api(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    out = run_dir()
    sign_run(out, key_cfg(keys))
    ms_verifying.Config().use_elliptic_key_verifier(public_key=keys.public_key).verify(out, out / "bastion/model.sig")
    (out / "extra.bin").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"extra\.bin"):
        ms_verifying.Config().use_elliptic_key_verifier(public_key=keys.public_key).verify(
            out, out / "bastion/model.sig"
        )


def test_certificate_signed_run_passes_the_stock_cli(
    run_dir: Callable[..., Path], pki: TestPKI, stock_verify: Stock
) -> None:
    out = run_dir()
    sign_run(out, cert_cfg(pki))
    res = stock_verify(
        "certificate",
        str(out),
        "--signature",
        str(out / "bastion/model.sig"),
        "--certificate_chain",
        str(pki.root_cert),
    )
    assert res.returncode == 0, res.stderr
    assert verify(out, certificate_chain=[pki.root_cert]).ok
    # Stock verification with another organisation's root fails too.
    other = stock_verify(
        "certificate",
        str(out),
        "--signature",
        str(out / "bastion/model.sig"),
        "--certificate_chain",
        str(pki.other_root_cert),
    )
    assert other.returncode == 1


def test_statement_bundle_verifies_with_sigstore_and_model_signing_code(
    run_dir: Callable[..., Path], keys: KeyPair
) -> None:
    out = run_dir()
    sign_run(out, key_cfg(keys))
    bundle_path = out / "bastion/statement.sigstore.json"
    statement_bytes = (out / "bastion/statement.json").read_bytes()
    public = serialization.load_pem_public_key(keys.public_key.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)

    # sigstore-python's DSSE verification over the envelope in our bundle.
    raw = json.loads(bundle_path.read_text())
    envelope = dsse.Envelope(EnvelopeModel.from_dict(raw["dsseEnvelope"]))
    assert dsse._verify(public, envelope) == statement_bytes

    # model_signing's bundle reader and key verifier (signature + key hint), the stock code path.
    payload_type, payload = ms_ec_key.Verifier(keys.public_key)._verify_signed_content(
        ms_pb.Signature.read(bundle_path)
    )
    assert payload_type == "application/vnd.in-toto+json"
    assert payload == statement_bytes


def test_certificate_statement_bundle_verifies_with_model_signing_certificate_verifier(
    run_dir: Callable[..., Path], pki: TestPKI
) -> None:
    out = run_dir()
    sign_run(out, cert_cfg(pki))
    verifier = ms_certificate.Verifier([pki.root_cert])
    _, payload = verifier._verify_signed_content(ms_pb.Signature.read(out / "bastion/statement.sigstore.json"))
    assert payload == (out / "bastion/statement.json").read_bytes()


def test_password_protected_key_signs_with_password_from_env(
    run_dir: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stock_verify: Stock
) -> None:
    monkeypatch.setenv("BASTION_TEST_KEY_PASSWORD", "correct horse battery staple")
    pair = generate_key_pair(tmp_path / "enc", password_env="BASTION_TEST_KEY_PASSWORD")
    assert b"ENCRYPTED" in pair.private_key.read_bytes()
    out = run_dir()
    sign_run(out, key_cfg(pair, password_env="BASTION_TEST_KEY_PASSWORD"))
    assert verify(out, public_key=pair.public_key).ok
    res = stock_verify(
        "key", str(out), "--signature", str(out / "bastion/model.sig"), "--public_key", str(pair.public_key)
    )
    assert res.returncode == 0, res.stderr

    monkeypatch.setenv("BASTION_TEST_KEY_PASSWORD", "Tr0ub4dor-not-it")
    with pytest.raises(SigningError, match="cannot decrypt") as err:
        sign_run(out, key_cfg(pair, password_env="BASTION_TEST_KEY_PASSWORD"))
    assert "Tr0ub4dor" not in str(err.value) and "correct horse" not in str(err.value)
    with pytest.raises(ConfigError, match="encrypted but no password"):
        sign_run(out, key_cfg(pair))


def test_p384_keys_work_end_to_end(run_dir: Callable[..., Path], tmp_path: Path, stock_verify: Stock) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    priv = write_key(key, tmp_path / "p384.pem")
    pub = tmp_path / "p384.pub"
    pub.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    out = run_dir()
    sign_run(out, SigningConfig(backend="key", private_key=priv))
    assert verify(out, public_key=pub).ok
    assert (
        stock_verify(
            "key", str(out), "--signature", str(out / "bastion/model.sig"), "--public_key", str(pub)
        ).returncode
        == 0
    )


def test_checkpoint_without_statement_gets_a_model_signature_only(
    tmp_path: Path, keys: KeyPair, stock_verify: Stock
) -> None:
    ckpt = tmp_path / "checkpoint-10"
    ckpt.mkdir()
    (ckpt / "adapter_model.safetensors").write_bytes(b"\x01" * 4096)
    (ckpt / "trainer_state.json").write_text('{"global_step": 10}')
    signed = sign_directory(ckpt, key_cfg(keys))
    assert signed.statement_bundle is None and signed.files == 2
    assert not (ckpt / "bastion/statement.sigstore.json").exists()
    res = stock_verify(
        "key", str(ckpt), "--signature", str(ckpt / "bastion/model.sig"), "--public_key", str(keys.public_key)
    )
    assert res.returncode == 0, res.stderr


def test_sign_directory_with_a_statement_signs_both(tmp_path: Path, keys: KeyPair) -> None:
    from bastion.provenance import Ledger, build_statement, hash_directory

    ckpt = tmp_path / "checkpoint-20"
    ckpt.mkdir()
    (ckpt / "adapter_model.safetensors").write_bytes(b"\x02" * 1000)
    with Ledger(ckpt / "bastion/ledger.jsonl", fsync="never") as led:
        led.append("checkpoint", {"step": 20})
        head = led.head
    predicate = {"run_id": "r", "ledger": {"path": "bastion/ledger.jsonl", "head": head.head, "entries": head.entries}}
    st = build_statement(hash_directory(ckpt, exclude=("bastion",)), predicate)
    signed = sign_directory(ckpt, key_cfg(keys), statement=st)
    assert signed.statement_bundle is not None and signed.statement_bundle.is_file()
    report = verify(ckpt, public_key=keys.public_key)
    assert report.ok, report.lines()


def test_checkpoint_records_nested_in_the_output_dir_are_signed_by_both_signatures(
    run_dir: Callable[..., Path], keys: KeyPair, stock_verify: Stock
) -> None:
    # A checkpoint record written during training (e.g. by sign_checkpoints), before the run's statement.
    files = {
        "adapter_model.safetensors": b"w" * 100,
        "checkpoint-2/adapter_model.safetensors": b"c" * 100,
        "checkpoint-2/bastion/statement.json": b"{}",
    }
    out = run_dir(files=files)
    signed = sign_run(out, key_cfg(keys))
    assert signed.model_signature is not None
    payload = json.loads(
        __import__("base64").b64decode(json.loads(signed.model_signature.read_text())["dsseEnvelope"]["payload"])
    )
    ignored = payload["predicate"]["serialization"]["ignore_paths"]
    assert [p for p in ignored if "bastion" in p] == ["bastion"]  # only the top-level record folder
    resources = {r["name"] for r in payload["predicate"]["resources"]}
    assert "checkpoint-2/bastion/statement.json" in resources
    stock = ("key", str(out), "--signature", str(signed.model_signature), "--public_key", str(keys.public_key))
    assert stock_verify(*stock).returncode == 0
    assert verify(out, public_key=keys.public_key).ok
    # The nested record is signed content: editing it fails both verifiers.
    (out / "checkpoint-2" / "bastion" / "statement.json").write_text('{"edited": true}')
    assert stock_verify(*stock).returncode != 0
    report = verify(out, public_key=keys.public_key)
    assert "subject.modified" in report.reasons(), report.lines()


def test_a_stale_statement_is_not_signed_and_nothing_is_written(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    out = run_dir()
    (out / "adapter_config.json").write_text('{"r": 16}\n')  # written after the statement
    (out / "late.bin").write_bytes(b"late")
    with pytest.raises(SigningError, match="does not describe the directory") as err:
        sign_run(out, key_cfg(keys))
    assert "adapter_config.json: changed" in str(err.value) and "late.bin: in the directory" in str(err.value)
    assert sorted(p.name for p in (out / "bastion").iterdir()) == ["ledger.jsonl", "statement.json"]


def test_unsigned_directory_is_a_clear_error(tmp_path: Path, keys: KeyPair) -> None:
    from bastion.errors import InputError

    (tmp_path / "out").mkdir()
    with pytest.raises(InputError, match="statement not found"):
        sign_run(tmp_path / "out", key_cfg(keys))
    with pytest.raises(InputError, match="not found"):
        sign_run(tmp_path / "missing", key_cfg(keys))


def test_symlink_in_output_is_a_signing_error_not_a_traceback(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    out = run_dir()
    (out / "link.json").symlink_to(out / "adapter_config.json")
    # The statement was written before the link existed; either way signing must fail cleanly.
    with pytest.raises(SigningError):
        sign_run(out, key_cfg(keys))


def test_model_signature_can_be_turned_off(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    out = run_dir()
    signed = sign_run(out, key_cfg(keys, model_signature=False))
    assert signed.model_signature is None and not (out / "bastion/model.sig").exists()
    assert verify(out, public_key=keys.public_key, require_model_signature=False).ok
    assert "model_signature.missing" in verify(out, public_key=keys.public_key).reasons()


def test_encrypted_certificate_key_needs_model_signature_off(
    run_dir: Callable[..., Path], pki: TestPKI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """model_signing 1.1.1's certificate signer cannot open encrypted keys: a clear error, and a way out."""
    key = serialization.load_pem_private_key(pki.leaf_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    encrypted = write_key(key, tmp_path / "leaf-encrypted.key", password=b"s3cret-for-test")
    monkeypatch.setenv("BASTION_TEST_LEAF_PW", "s3cret-for-test")
    cfg = dict(
        backend="certificate",
        private_key=encrypted,
        certificate=pki.leaf_cert,
        certificate_chain=(pki.intermediate_cert,),
        password_env="BASTION_TEST_LEAF_PW",
    )
    out = run_dir()
    with pytest.raises(ConfigError, match="model_signature: false"):
        sign_run(out, SigningConfig(**cfg))  # type: ignore[arg-type]
    assert not (out / "bastion/statement.sigstore.json").exists()
    sign_run(out, SigningConfig(**cfg, model_signature=False))  # type: ignore[arg-type]
    assert verify(out, certificate_chain=[pki.root_cert], require_model_signature=False).ok
