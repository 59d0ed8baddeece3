"""BastionCallback.record_export: a directory saved outside the run's output folder gets its own record."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hf_helpers import files_in, make_trainer, read_ledger

from bastion.errors import ConfigError, InputError
from bastion.plugins.hf import BastionCallback
from bastion.provenance import signing
from bastion.provenance.ledger import verify_ledger
from bastion.provenance.statement import load_statement


def _save_merged(tiny_model_dir: Path, target: Path) -> Path:
    """Stands in for a merge/export step: a model directory written outside the trainer's output_dir."""
    shutil.copytree(tiny_model_dir, target)
    return target


def test_export_during_and_after_the_run_is_recorded_and_signed(
    tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    from bastion.provenance.verify import verify

    keys = signing.generate_key_pair(tmp_path / "keys")
    out = tmp_path / "out"
    cb = BastionCallback(
        base_model=tiny_model_dir,
        datasets=[data["train"]],
        signing={"backend": "key", "private_key": str(keys.private_key)},
        strict=True,
    )
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb], max_steps=1)
    trainer.train()
    trainer.save_model()
    assert cb.recording and cb.is_main_process is True and cb.statement_path is None

    merged = _save_merged(tiny_model_dir, tmp_path / "merged")
    rec = cb.record_export(merged, kind="merge", details={"method": "merge_and_unload", "dtype": "float32"})
    assert rec is not None and rec.signed and rec.kind == "merge"
    assert {f.name: f.sha256 for f in rec.digest.files} == files_in(merged)
    statement = load_statement(rec.statement)
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == files_in(merged)
    pred = statement["predicate"]
    assert pred["merge"] == {"path": "merged", "method": "merge_and_unload", "dtype": "float32"}
    assert pred["base_model"]["digest"]["sha256"]  # the run's inputs are in the export's predicate
    # The copy is the run ledger's prefix ending at the "merge" entry, pinned by the statement.
    copy = read_ledger(merged / "bastion" / "ledger.jsonl")
    assert copy[-1]["kind"] == "merge" and len(copy) == rec.ledger_entries == pred["ledger"]["entries"]
    verify_ledger(merged / "bastion" / "ledger.jsonl", expected_head=pred["ledger"]["head"])
    assert verify(merged, public_key=keys.public_key).ok

    # Inside the run's own output folder: described by the run record, no record of its own.
    assert cb.record_export(out) is None and not (out / "bastion" / "statement.json").exists()

    run_statement = cb.finalize()
    assert cb.statement_path == run_statement
    run_ledger = read_ledger(out / "bastion" / "ledger.jsonl")
    assert copy == run_ledger[: len(copy)]  # the merge entry is part of the run's chain

    # After finalize(): the run record stays as it is; the export forks the chain in its copy.
    before = (out / "bastion" / "ledger.jsonl").read_bytes()
    late = _save_merged(tiny_model_dir, tmp_path / "late")
    rec2 = cb.record_export(late)
    assert rec2 is not None
    forked = read_ledger(late / "bastion" / "ledger.jsonl")
    assert forked[:-1] == run_ledger and forked[-1]["kind"] == "export"
    assert (out / "bastion" / "ledger.jsonl").read_bytes() == before
    assert verify(late, public_key=keys.public_key).ok
    with pytest.raises(InputError, match="after its record was finalized"):
        cb.record_export(out)


@pytest.mark.parametrize(
    ("kind", "details", "match"),
    [
        ("outputs", None, "kind 'outputs' is not usable"),
        ("base_model", None, "kind 'base_model' is not usable"),
        ("Export Now", None, "is not usable"),
        ("export", {"files": []}, "details may not set files"),
    ],
)
def test_unusable_kind_or_details_are_refused(kind: str, details: dict[str, object] | None, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BastionCallback().record_export(".", kind=kind, details=details)


def test_export_without_a_training_run_is_refused(tmp_path: Path) -> None:
    cb = BastionCallback()
    with pytest.raises(ConfigError, match="no training run was"):
        cb.record_export(tmp_path)
    assert not (tmp_path / "bastion").exists()
