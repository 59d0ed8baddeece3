"""Throwaway keys and a CA hierarchy for tests, demos and trying the certificate backend.

Never use these for real artifacts: the CA keys are written unencrypted next to the certificates.

```python
pki = make_test_pki(tmp_path / "pki")
SigningConfig(backend="certificate", private_key=pki.leaf_key, certificate=pki.leaf_cert,
              certificate_chain=(pki.intermediate_cert,))
verify(out, certificate_chain=[pki.root_cert])
```
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str, org: str = "Bastion Test") -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue_certificate(
    subject_key: ec.EllipticCurvePrivateKey,
    subject: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    *,
    ca: bool,
    path_length: int | None = None,
    code_signing: bool = True,
    email: str | None = None,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime | None = None,
) -> x509.Certificate:
    """One certificate with the extensions a WebPKI-style path validator expects."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - dt.timedelta(days=1))
        .not_valid_after(not_after or now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        usage = ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if email:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_key(key: ec.EllipticCurvePrivateKey, path: Path, password: bytes | None = None) -> Path:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    os.chmod(path, 0o600)
    return path


def write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@dataclass(frozen=True)
class TestPKI:
    """Root CA -> intermediate -> code-signing leaf, plus an expired leaf and an unrelated CA's leaf."""

    __test__ = False  # not a pytest test class

    root_cert: Path
    intermediate_cert: Path
    leaf_key: Path
    leaf_cert: Path
    leaf_email: str
    expired_key: Path
    expired_cert: Path
    other_root_cert: Path
    other_intermediate_cert: Path
    other_leaf_key: Path
    other_leaf_cert: Path
    server_leaf_key: Path
    server_leaf_cert: Path


def make_test_pki(directory: str | os.PathLike[str], *, email: str = "ml-release@acme.example") -> TestPKI:
    """Write a throwaway PKI into ``directory`` (see :class:`TestPKI`)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def chain(prefix: str, org: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Name, Path, Path]:
        rk = ec.generate_private_key(ec.SECP256R1())
        rn = _name(f"{org} Root CA", org)
        root = issue_certificate(rk, rn, rk, rn, ca=True, path_length=1, not_after=now + dt.timedelta(days=3650))
        ik = ec.generate_private_key(ec.SECP256R1())
        inn = _name(f"{org} Signing CA", org)
        inter = issue_certificate(ik, inn, rk, rn, ca=True, path_length=0, not_after=now + dt.timedelta(days=1825))
        return ik, inn, write_cert(root, d / f"{prefix}root.pem"), write_cert(inter, d / f"{prefix}intermediate.pem")

    ik, inn, root_p, inter_p = chain("", "Acme")
    lk = ec.generate_private_key(ec.SECP256R1())
    leaf = issue_certificate(lk, _name("ml-release", "Acme"), ik, inn, ca=False, email=email)
    ek = ec.generate_private_key(ec.SECP256R1())
    expired = issue_certificate(
        ek,
        _name("ml-release-old", "Acme"),
        ik,
        inn,
        ca=False,
        email=email,
        not_before=now - dt.timedelta(days=400),
        not_after=now - dt.timedelta(days=35),
    )
    sk = ec.generate_private_key(ec.SECP256R1())
    server = issue_certificate(sk, _name("web", "Acme"), ik, inn, ca=False, code_signing=False)
    oik, oinn, oroot_p, ointer_p = chain("other-", "Mallory")
    ok = ec.generate_private_key(ec.SECP256R1())
    other = issue_certificate(ok, _name("ml-release", "Mallory"), oik, oinn, ca=False, email=email)
    return TestPKI(
        root_cert=root_p,
        intermediate_cert=inter_p,
        leaf_key=write_key(lk, d / "leaf.key"),
        leaf_cert=write_cert(leaf, d / "leaf.pem"),
        leaf_email=email,
        expired_key=write_key(ek, d / "expired.key"),
        expired_cert=write_cert(expired, d / "expired.pem"),
        other_root_cert=oroot_p,
        other_intermediate_cert=ointer_p,
        other_leaf_key=write_key(ok, d / "other-leaf.key"),
        other_leaf_cert=write_cert(other, d / "other-leaf.pem"),
        server_leaf_key=write_key(sk, d / "server.key"),
        server_leaf_cert=write_cert(server, d / "server.pem"),
    )


DEFAULT_FILES: dict[str, bytes] = {
    "adapter_model.safetensors": bytes(range(256)) * 64,
    "adapter_config.json": b'{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}\n',
    "tokenizer_config.json": b'{"model_max_length": 512}\n',
    "nested/README.md": b"# adapter\n",
}


def make_run_dir(
    directory: str | os.PathLike[str],
    *,
    run_id: str = "run-0001",
    files: dict[str, bytes] | None = None,
    finished_at: dt.datetime | None = None,
    overlap: int | None = 0,
    base_model_sha256: str = "1" * 64,
    datasets: list[dict[str, object]] | None = None,
) -> Path:
    """An output directory with files, a hash-chained ledger and an unsigned statement, as a run leaves it.

    Built by :class:`~bastion.provenance.recorder.RunRecorder` (the recorder every integration uses),
    with input digests given rather than hashed (``base_model_sha256``, ``datasets`` as predicate
    entries, ``overlap``) and the run's times fixed by ``finished_at``, so that verification and
    deploy policies can be exercised without training.
    """
    from bastion.provenance.predicate import DatasetRecord, ModelInput
    from bastion.provenance.recorder import RunRecorder

    out = Path(directory)
    finished = finished_at or dt.datetime.now(dt.UTC)
    if datasets is None:
        datasets = [
            {"name": "train.jsonl", "role": "train", "digest": {"sha256": "a" * 64}, "records": 10},
            {"name": "eval.jsonl", "role": "eval", "digest": {"sha256": "b" * 64}, "records": 3},
        ]
    times = iter((finished - dt.timedelta(minutes=5), finished))
    recorder = RunRecorder(
        config={"learning_rate": 0.0001},
        framework="transformers",
        fsync="never",
        run_id=run_id,
        clock=lambda: next(times, finished),
    )
    recorder.record_inputs(
        base_model=ModelInput(path_name="tiny-llama", sha256=base_model_sha256),
        datasets=[DatasetRecord.parse(d, f"datasets[{i}]") for i, d in enumerate(datasets)],
        overlap=overlap,
    )
    recorder.start(out)
    for rel, content in (DEFAULT_FILES if files is None else files).items():  # written during the run
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    for step in (1, 2):
        recorder.log(step, step / 2, {"loss": 1.0 / step})
    recorder.train_end(2, 1.0)
    recorder.finalize()
    return out
