"""Golden files pin the v1 run-record format: ``statement.json`` and the ledger's lines.

The record is built by :class:`RunRecorder` from fixed inputs (files, config, metrics, clock), so
everything but a few volatile fields is reproducible; those are normalised before comparing:
ledger entry times, the captured environment, the Bastion version, and the hashes that cover them
(entry ``hash``/``prev``, the ledger head). Any other change to a field name, a type, an entry kind
or a digest fails here.

Regenerate after an intended format change (and say why in the commit)::

    BASTION_UPDATE_GOLDENS=1 .venv/bin/python -m pytest tests/provenance/test_golden.py
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bastion.provenance import verify_ledger
from bastion.provenance.inputs import DatasetInput
from bastion.provenance.predicate import PREDICATE_TYPE, RunPredicate
from bastion.provenance.recorder import RunRecorder

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BASTION_UPDATE_GOLDENS") == "1"
T0 = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def build_record(root: Path) -> Path:
    """A complete run record: declared inputs hashed, logs (one non-finite), a checkpoint, outputs, an export."""
    base = root / "tiny-base"
    base.mkdir(parents=True)
    (base / "config.json").write_text('{"model_type": "llama"}\n')
    (base / "model.safetensors").write_bytes(bytes(range(256)) * 8)
    data = root / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": f"sample {i}"}) + "\n" for i in range(6)))
    (data / "eval.jsonl").write_text('{"text": "sample 2"}\n{"text": "held out"}\n')
    out = root / "out"
    times = iter(T0 + dt.timedelta(minutes=m) for m in range(10))
    rec = RunRecorder(
        base_model=base,
        datasets=[DatasetInput(data / "train.jsonl"), DatasetInput(data / "eval.jsonl", role="eval")],
        config={"learning_rate": 0.001, "max_steps": 2, "hub_token": "hf_secretsecretsecret", "nested": {"x": [1, 2]}},
        framework="transformers",
        strict=True,  # inputs hashed before start() returns, logs written in call order: a stable ledger
        fsync="never",
        run_id="golden-run",
        clock=lambda: next(times),
    )
    assert rec.start(out, training_arguments={"output_dir": "out", "seed": 7, "hub_token": "hf_x"})
    rec.log(1, 0.5, {"loss": 2.5, "grad_norm": float("nan"), "learning_rate": 0.001})
    ckpt = out / "checkpoint-2"
    ckpt.mkdir(parents=True)
    (ckpt / "adapter_model.safetensors").write_bytes(b"\x01" * 64)
    rec.log(2, 1.0, {"loss": 1.5, "epoch_time": 3})
    rec.checkpoint(ckpt, 2)
    rec.wait()
    rec.train_end(2, 1.0)
    (out / "adapter_model.safetensors").write_bytes(b"\x02" * 64)
    (out / "adapter_config.json").write_text('{"r": 4}\n')
    rec.finalize()
    export = root / "merged"
    export.mkdir()
    (export / "model.safetensors").write_bytes(b"\x03" * 64)
    rec.record_export(export, kind="merge", details={"method": "merge_and_unload"})
    return out


VOLATILE_ENTRY = ("time", "hash", "prev")


def normalise_entry(entry: dict[str, Any]) -> dict[str, Any]:
    out = {k: (f"<{k}>" if k in VOLATILE_ENTRY else v) for k, v in entry.items()}
    data = out.get("data")
    if isinstance(data, dict) and "environment" in data:
        out["data"] = {**data, "environment": "<environment>"}
    return out


def normalise_statement(statement: dict[str, Any]) -> dict[str, Any]:
    pred = dict(statement["predicate"])
    pred["environment"] = "<environment>"
    pred["bastion_version"] = "<version>"
    pred["ledger"] = {**pred["ledger"], "head": "<hash>"}
    return {**statement, "predicate": pred}


def check(name: str, value: Any) -> None:
    path = GOLDEN / name
    text = json.dumps(value, indent=2, sort_keys=True) + "\n"
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: regenerate with BASTION_UPDATE_GOLDENS=1"
    assert json.loads(path.read_text(encoding="utf-8")) == value, (
        f"the v1 record format changed ({name}); if intended, regenerate with BASTION_UPDATE_GOLDENS=1"
    )


@pytest.fixture(scope="module")
def record(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_record(tmp_path_factory.mktemp("golden"))


def test_statement_matches_the_golden_file(record: Path) -> None:
    statement = json.loads((record / "bastion" / "statement.json").read_text(encoding="utf-8"))
    assert statement["predicateType"] == PREDICATE_TYPE
    check("statement.json", normalise_statement(statement))
    # The typed model reads the golden record back and writes it out unchanged.
    assert RunPredicate.parse(statement["predicate"]).to_json() == statement["predicate"]


def test_ledger_lines_match_the_golden_file(record: Path) -> None:
    path = record / "bastion" / "ledger.jsonl"
    statement = json.loads((record / "bastion" / "statement.json").read_text(encoding="utf-8"))
    head = verify_ledger(path)
    assert head.head == statement["predicate"]["ledger"]["head"]
    lines = path.read_bytes().splitlines()
    # Each line is the entry's RFC 8785 form (sorted keys, no spaces): pinned by re-encoding.
    for line in lines:
        assert line == json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    check("ledger.json", [normalise_entry(json.loads(line)) for line in lines])


def test_export_record_matches_the_golden_file(record: Path) -> None:
    export = record.parent / "merged" / "bastion"
    statement = json.loads((export / "statement.json").read_text(encoding="utf-8"))
    check("export-statement.json", normalise_statement(statement))
    entries = [normalise_entry(json.loads(line)) for line in (export / "ledger.jsonl").read_bytes().splitlines()]
    assert entries[-1]["kind"] == "merge"
