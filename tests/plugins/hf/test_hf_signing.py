"""The callback signs the run (and its checkpoints) through bastion.provenance.signing; the real verifier checks it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hf_helpers import make_trainer, read_ledger

from bastion.errors import ConfigError
from bastion.plugins.hf import BastionCallback, DatasetInput
from bastion.provenance import signing


def test_signed_run_verifies_and_tampering_is_caught(
    tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    from bastion.provenance.verify import verify

    keys = signing.generate_key_pair(tmp_path / "keys")
    out = tmp_path / "out"
    cb = BastionCallback(
        base_model=tiny_model_dir,
        datasets=[DatasetInput(data["train"], "train")],
        signing={"backend": "key", "private_key": str(keys.private_key)},
        sign_checkpoints=True,
    )
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb], max_steps=2, save_steps=2)
    trainer.train()
    trainer.save_model()
    cb.finalize()
    record = out / "bastion"
    assert (record / "statement.sigstore.json").is_file() and (record / "model.sig").is_file()
    ckpt_record = out / "checkpoint-2" / "bastion"
    assert (ckpt_record / "statement.json").is_file() and (ckpt_record / "statement.sigstore.json").is_file()
    assert [e["data"]["step"] for e in read_ledger(record / "ledger.jsonl") if e["kind"] == "checkpoint.signed"] == [2]

    report = verify(out, public_key=keys.public_key)
    assert report.ok, report.lines()
    assert verify(out / "checkpoint-2", public_key=keys.public_key, require_model_signature=True).ok

    # Change one output byte: the same verifier now fails.
    weights = out / "adapter_model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    assert not verify(out, public_key=keys.public_key).ok


def test_bad_signing_config_fails_strict_run_before_training(
    tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    cb = BastionCallback(datasets=[data["train"]], signing={"backend": "key"}, strict=True)
    trainer = make_trainer(tiny_model_dir, tmp_path / "out", data["train"], None, [cb], max_steps=1)
    with pytest.raises(ConfigError, match="private_key"):
        trainer.train()
    assert trainer.state.global_step == 0


def test_sign_checkpoints_without_signing_is_refused_in_strict_mode(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[], use_cpu=True)
    with pytest.raises(ConfigError, match="no signing configured"):
        BastionCallback(sign_checkpoints=True, strict=True).on_train_begin(args, TrainerState(), TrainerControl())
