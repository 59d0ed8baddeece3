"""The tamper matrix: every way of altering a signed run is rejected, for the right reason."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.provenance.signing import KeyPair, SigningConfig, sign_run
from bastion.provenance.signing.testing import TestPKI
from bastion.provenance.verify import verify

RECORD = "bastion"


def key_config(keys: KeyPair) -> SigningConfig:
    return SigningConfig(backend="key", private_key=keys.private_key)


def cert_config(key: Path, cert: Path, chain: tuple[Path, ...]) -> SigningConfig:
    return SigningConfig(backend="certificate", private_key=key, certificate=cert, certificate_chain=chain)


def flip_byte(path: Path, offset: int = 100) -> None:
    blob = bytearray(path.read_bytes())
    blob[offset] ^= 0x01
    path.write_bytes(bytes(blob))


def ledger_lines(out: Path) -> list[bytes]:
    return (out / RECORD / "ledger.jsonl").read_bytes().splitlines(keepends=True)


def write_ledger(out: Path, lines: list[bytes]) -> None:
    (out / RECORD / "ledger.jsonl").write_bytes(b"".join(lines))


# --- tampering actions: (signed output dir, context) -> None --------------------------------------------


def change_adapter_byte(out: Path, ctx: Context) -> None:
    flip_byte(out / "adapter_model.safetensors")


def add_file(out: Path, ctx: Context) -> None:
    (out / "backdoor.py").write_text("import os\n")


def remove_file(out: Path, ctx: Context) -> None:
    (out / "tokenizer_config.json").unlink()


def swap_bundle_for_other_runs(out: Path, ctx: Context) -> None:
    other = ctx.signed_run("other", run_id="run-0002", files={"adapter_model.safetensors": b"other weights"})
    shutil.copy(other / RECORD / "statement.sigstore.json", out / RECORD / "statement.sigstore.json")


def edit_statement(out: Path, ctx: Context) -> None:
    path = out / RECORD / "statement.json"
    st = json.loads(path.read_text())
    st["predicate"]["metrics"]["train_loss"] = 0.01
    path.write_text(json.dumps(st, indent=2, sort_keys=True) + "\n")


def resign_with_other_key(out: Path, ctx: Context) -> None:
    sign_run(out, key_config(ctx.other_keys))


def corrupt_bundle_signature(out: Path, ctx: Context) -> None:
    path = out / RECORD / "statement.sigstore.json"
    bundle = json.loads(path.read_text())
    sig = bundle["dsseEnvelope"]["signatures"][0]["sig"]
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = ("B" if sig[5] != "B" else "C").join((sig[:5], sig[6:]))
    path.write_text(json.dumps(bundle))


def edit_ledger_line(out: Path, ctx: Context) -> None:
    lines = ledger_lines(out)
    lines[2] = lines[2].replace(b'"loss":1', b'"loss":2')
    write_ledger(out, lines)


def delete_ledger_line(out: Path, ctx: Context) -> None:
    lines = ledger_lines(out)
    del lines[1]
    write_ledger(out, lines)


def reorder_ledger_lines(out: Path, ctx: Context) -> None:
    lines = ledger_lines(out)
    lines[1], lines[2] = lines[2], lines[1]
    write_ledger(out, lines)


def truncate_ledger(out: Path, ctx: Context) -> None:
    write_ledger(out, ledger_lines(out)[:-1])


def remove_model_signature(out: Path, ctx: Context) -> None:
    (out / RECORD / "model.sig").unlink()


def swap_model_signature_for_other_runs(out: Path, ctx: Context) -> None:
    other = ctx.signed_run("other", run_id="run-0002", files={"adapter_model.safetensors": b"other weights"})
    shutil.copy(other / RECORD / "model.sig", out / RECORD / "model.sig")


def resign_with_untrusted_ca(out: Path, ctx: Context) -> None:
    pki = ctx.pki
    sign_run(out, cert_config(pki.other_leaf_key, pki.other_leaf_cert, (pki.other_intermediate_cert,)))


def resign_with_expired_certificate(out: Path, ctx: Context) -> None:
    pki = ctx.pki
    sign_run(out, cert_config(pki.expired_key, pki.expired_cert, (pki.intermediate_cert,)))


class Context:
    def __init__(self, tmp_path: Path, run_dir: Callable[..., Path], keys: KeyPair, other_keys: KeyPair, pki: TestPKI):
        self.tmp_path, self.run_dir, self.keys, self.other_keys, self.pki = tmp_path, run_dir, keys, other_keys, pki

    def signed_run(self, name: str, **kwargs: object) -> Path:
        out = self.run_dir(name, **kwargs)
        sign_run(out, key_config(self.keys))
        return out


# trust: which trust anchor the verifier is given ("key" = the right public key; "ca" = the Acme root).
MATRIX = [
    # (case id, signer used for the original, tampering, trust, expected reason, message fragment)
    ("adapter-byte-changed", "key", change_adapter_byte, "key", "subject.modified", "adapter_model.safetensors"),
    ("file-added", "key", add_file, "key", "subject.extra", "backdoor.py"),
    ("file-removed", "key", remove_file, "key", "subject.missing", "tokenizer_config.json"),
    ("bundle-from-other-run", "key", swap_bundle_for_other_runs, "key", "statement.mismatch", "another run"),
    ("statement-edited", "key", edit_statement, "key", "statement.mismatch", "predicate.metrics.train_loss"),
    ("signed-by-other-key", "key", resign_with_other_key, "key", "signature.untrusted_key", "not trusted"),
    ("bundle-signature-corrupted", "key", corrupt_bundle_signature, "key", "signature.invalid", "altered"),
    ("ledger-line-edited", "key", edit_ledger_line, "key", "ledger.broken", "edited"),
    ("ledger-line-deleted", "key", delete_ledger_line, "key", "ledger.broken", "deleted"),
    ("ledger-lines-reordered", "key", reorder_ledger_lines, "key", "ledger.broken", "moved"),
    ("ledger-truncated", "key", truncate_ledger, "key", "ledger.broken", "truncated"),
    ("model-signature-removed", "key", remove_model_signature, "key", "model_signature.missing", "model_signing"),
    (
        "model-signature-from-other-run",
        "key",
        swap_model_signature_for_other_runs,
        "key",
        "model_signature.mismatch",
        "adapter_model",
    ),
    ("certificate-from-untrusted-ca", "cert", resign_with_untrusted_ca, "ca", "certificate.untrusted", "trusted CA"),
    ("expired-certificate", "cert", resign_with_expired_certificate, "ca", "certificate.expired", "expired"),
]


@pytest.mark.parametrize(
    ("signer", "tamper", "trust", "reason", "fragment"),
    [pytest.param(*row[1:], id=row[0]) for row in MATRIX],
)
def test_tampering_is_rejected_with_the_right_reason(
    tmp_path: Path,
    run_dir: Callable[..., Path],
    keys: KeyPair,
    other_keys: KeyPair,
    pki: TestPKI,
    signer: str,
    tamper: Callable[[Path, Context], None],
    trust: str,
    reason: str,
    fragment: str,
) -> None:
    ctx = Context(tmp_path, run_dir, keys, other_keys, pki)
    out = run_dir("out")
    if signer == "key":
        sign_run(out, key_config(keys))
    else:
        sign_run(out, cert_config(pki.leaf_key, pki.leaf_cert, (pki.intermediate_cert,)))
    trust_args: dict[str, object] = (
        {"public_key": keys.public_key} if trust == "key" else {"certificate_chain": [pki.root_cert]}
    )
    before = verify(out, **trust_args)  # type: ignore[arg-type]
    assert before.ok, before.lines()

    tamper(out, ctx)

    report = verify(out, **trust_args)  # type: ignore[arg-type]
    assert not report.ok
    assert reason in report.reasons(), report.lines()
    matching = [f for f in report.failures if f.check == reason]
    assert any(fragment in f.line() for f in matching), [f.line() for f in matching]
    # Every failure line says what differs.
    assert all(f.line().startswith(f.check + ": ") for f in report.failures)


def test_a_file_change_names_expected_and_found_digests(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    out = run_dir()
    sign_run(out, key_config(keys))
    before = {
        s["name"]: s["digest"]["sha256"] for s in json.loads((out / RECORD / "statement.json").read_text())["subject"]
    }
    flip_byte(out / "adapter_model.safetensors")
    report = verify(out, public_key=keys.public_key)
    [failure] = [f for f in report.failures if f.check == "subject.modified"]
    # Both digests checked against values computed here, independently of the verifier.
    now = hashlib.sha256((out / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert now != before["adapter_model.safetensors"]
    check, expected, found = failure  # the public contract's (check, expected, found) triple
    assert (check, expected, found) == (
        "subject.modified",
        "sha256:" + before["adapter_model.safetensors"],
        "sha256:" + now,
    )


def test_verification_uses_signed_content_not_the_edited_file(run_dir: Callable[..., Path], keys: KeyPair) -> None:
    """An attacker who edits statement.json to match a swapped file still fails on the signed digests."""
    out = run_dir()
    sign_run(out, key_config(keys))
    (out / "adapter_config.json").write_text('{"r": 64}\n')
    path = out / RECORD / "statement.json"
    st = json.loads(path.read_text())
    from bastion.provenance.hashing import sha256_file

    for s in st["subject"]:
        if s["name"] == "adapter_config.json":
            s["digest"]["sha256"] = sha256_file(out / "adapter_config.json")
    path.write_text(json.dumps(st, indent=2, sort_keys=True) + "\n")
    report = verify(out, public_key=keys.public_key)
    assert {"statement.mismatch", "subject.modified"} <= report.reasons()
