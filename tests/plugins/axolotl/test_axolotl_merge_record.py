"""``record_merge`` on a real (small, hand-built) signed run record; no Axolotl needed (default suite).

The end-to-end path through ``axolotl merge-lora`` is in test_axolotl_train.py (framework job).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.errors import InputError, LedgerVerificationError
from bastion.plugins.axolotl.merge import record_merge
from bastion.provenance.recorder import RunRecorder
from bastion.provenance.signing import SigningConfig, generate_key_pair, sign_run
from bastion.provenance.verify import verify


def _run_record(tmp_path: Path, *, signed: bool) -> tuple[Path, Path, dict[str, str]]:
    """An output dir with an adapter, a ledger and a statement (signed with a fresh key if asked)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    (model / "model.safetensors").write_bytes(b"base weights")
    out = tmp_path / "out"
    recorder = RunRecorder(base_model=model, framework="axolotl", fsync="never")
    recorder.start(out)
    (out / "adapter_model.safetensors").write_bytes(b"lora weights")
    (out / "adapter_config.json").write_text('{"r": 4}', encoding="utf-8")
    recorder.train_end(1, 1.0)
    recorder.finalize()
    signing: dict[str, str] = {}
    if signed:
        keys = generate_key_pair(tmp_path / "keys")
        signing = {"backend": "key", "private_key": str(keys.private_key)}
        sign_run(out, SigningConfig.from_mapping(signing))
    merged = out / "merged"
    merged.mkdir()
    (merged / "model.safetensors").write_bytes(b"merged weights")
    (merged / "config.json").write_text('{"model_type": "llama"}', encoding="utf-8")
    return out, model, signing


def test_merge_extends_the_ledger_and_both_records_verify(tmp_path: Path) -> None:
    out, model, signing = _run_record(tmp_path, signed=True)
    before = (out / "bastion" / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    parent, child = record_merge(out, base_model=model, adapter_dir=out, signing=signing)
    assert parent == out / "bastion" / "statement.json"
    assert child == out / "merged" / "bastion" / "statement.json"
    after = (out / "bastion" / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    assert after[: len(before)] == before
    assert [json.loads(line)["kind"] for line in after[len(before) :]] == ["merge", "outputs"]
    merge = json.loads(after[len(before)])["data"]
    assert merge["base_model"]["path_name"] == "model"
    assert {f["name"] for f in merge["adapter"]["files"]} == {"adapter_model.safetensors", "adapter_config.json"}
    statement = json.loads(parent.read_text(encoding="utf-8"))
    assert "merged/model.safetensors" in {s["name"] for s in statement["subject"]}
    public = tmp_path / "keys" / "signing.pub"
    for artifact in (out, out / "merged"):
        report = verify(artifact, public_key=public)
        assert report.ok, (artifact, report.failures)


def test_a_tampered_ledger_is_not_extended(tmp_path: Path) -> None:
    out, model, signing = _run_record(tmp_path, signed=True)
    ledger = out / "bastion" / "ledger.jsonl"
    lines = ledger.read_text(encoding="utf-8").splitlines()
    assert '"axolotl"' in lines[0]
    lines[0] = lines[0].replace('"axolotl"', '"someone-else"')
    ledger.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(LedgerVerificationError) as info:
        record_merge(out, base_model=model, adapter_dir=out, signing=signing)
    assert info.value.line == 1
    assert not (out / "merged" / "bastion").exists()


def test_a_signed_record_is_not_rewritten_unsigned(tmp_path: Path) -> None:
    out, model, _ = _run_record(tmp_path, signed=True)
    statement = (out / "bastion" / "statement.json").read_bytes()
    with pytest.raises(InputError, match="no bastion_signing is set for merge-lora"):
        record_merge(out, base_model=model, adapter_dir=out, signing=None)
    assert (out / "bastion" / "statement.json").read_bytes() == statement


def test_an_unsigned_record_is_updated_without_signatures(tmp_path: Path) -> None:
    out, model, _ = _run_record(tmp_path, signed=False)
    record_merge(out, base_model=model, adapter_dir=out)
    assert not (out / "bastion" / "statement.sigstore.json").exists()
    merged_statement = json.loads((out / "merged" / "bastion" / "statement.json").read_text(encoding="utf-8"))
    assert {s["name"] for s in merged_statement["subject"]} == {"model.safetensors", "config.json"}


def test_no_training_record_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "out" / "merged").mkdir(parents=True)
    with pytest.raises(InputError, match="no training run record to extend") as info:
        record_merge(tmp_path / "out", base_model=None, adapter_dir=tmp_path / "out")
    assert "plugins: [bastion.plugins.axolotl.BastionPlugin]" in str(info.value)
