"""``bastion inspect`` reads the typed run predicate: a malformed one is named, an earlier run is shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run

from bastion.provenance.signing.testing import make_run_dir


def test_a_malformed_predicate_is_named_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = make_run_dir(tmp_path / "out")
    path = out / "bastion" / "statement.json"
    st = json.loads(path.read_text(encoding="utf-8"))
    st["predicate"]["metrics"]["final"] = {"loss": "low"}
    path.write_text(json.dumps(st), encoding="utf-8")
    code, text, err = run(capsys, "inspect", str(out))
    assert code == 1 and "Traceback" not in err
    assert "predicate: MALFORMED: predicate.metrics.final.loss: expected a number, found a string" in text
    assert "run id: run-0001" in text  # what can be read is still shown
    code, raw, _ = run(capsys, "inspect", str(out), "--json")
    assert code == 1 and json.loads(raw)["predicate_problem"].startswith("predicate.metrics.final.loss")


def test_an_earlier_run_in_the_directory_is_shown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = make_run_dir(tmp_path / "out", run_id="first")
    make_run_dir(out, run_id="second", files={"adapter_model.safetensors": b"new"})
    code, text, _ = run(capsys, "inspect", str(out))
    assert code == 0
    assert "previous run here: first (finished); its record is bastion/previous/1-first/ledger.jsonl" in text
    assert "3 file(s) it left are not this run's outputs" in text
    code, raw, _ = run(capsys, "inspect", str(out), "--json")
    doc = json.loads(raw)
    assert doc["predicate_problem"] is None and doc["previous_run"]["run_id"] == "first"
