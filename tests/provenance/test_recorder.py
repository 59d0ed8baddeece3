"""RunRecorder used directly, as a framework adapter would (no Trainer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.errors import ConfigError, InputError, LedgerError, LedgerVerificationError
from bastion.provenance import load_statement, verify_ledger
from bastion.provenance.predicate import ModelInput, PredicateError, RunPredicate
from bastion.provenance.recorder import RunRecorder
from bastion.provenance.signing.testing import make_run_dir


def kinds(path: Path) -> list[str]:
    return [json.loads(line)["kind"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_minimal_adapter_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rec = RunRecorder(framework="my-trainer", fsync="never")
    rec.warn("config key 'x' is ignored", "config.ignored")  # before start: kept for the ledger
    assert rec.start(out, training_arguments={"lr": 0.1, "api_key": "sk-live-abcdefabcdefabcdefabcdef"})
    rec.log(1, 0.5, {"loss": 2.0})
    (out / "model.bin").write_bytes(b"w")
    rec.train_end(1, 1.0)
    statement = load_statement(rec.finalize())
    assert kinds(out / "bastion" / "ledger.jsonl") == ["run.start", "warning", "inputs", "log", "train.end", "outputs"]
    pred = RunPredicate.parse(statement["predicate"])
    assert pred.framework == "my-trainer" and pred.warnings == ("config key 'x' is ignored",)
    assert pred.training_arguments is not None and pred.training_arguments.value["api_key"] == "[REDACTED]"
    assert pred.training_arguments.redacted == ("/api_key",)
    assert rec.finalize() == out / "bastion" / "statement.json"  # idempotent


def test_record_inputs_is_for_a_recorder_without_declared_inputs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="record_inputs"):
        RunRecorder(datasets=[tmp_path / "d.jsonl"]).record_inputs(base_model=ModelInput("m", "1" * 64))
    rec = RunRecorder(fsync="never")
    rec.start(tmp_path / "out")
    with pytest.raises(ConfigError, match="before start"):
        rec.record_inputs()
    rec.abort("the test is over")  # else its exit hook reports an unfinished run when pytest exits


def test_finalize_without_a_run_says_why(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="training never began"):
        RunRecorder().finalize()
    rec = RunRecorder(fsync="never")
    rec.start(tmp_path / "out")
    rec.abort("the framework failed")
    rec.abort("again")  # once only
    rec.log(2, 1.0, {"loss": 1.0})  # ignored after abort
    assert kinds(tmp_path / "out" / "bastion" / "ledger.jsonl")[-1] == "run.aborted"
    with pytest.raises(ConfigError, match=r"aborted .*the framework failed"):
        rec.finalize()
    assert rec.start(tmp_path / "o2") is False  # not strict: a warning, nothing recorded
    rec.strict = True
    with pytest.raises(ConfigError, match="already recorded a run"):
        rec.start(tmp_path / "o3")


def test_a_finished_run_in_the_directory_is_kept_and_named(tmp_path: Path) -> None:
    out = make_run_dir(tmp_path / "out", run_id="first")
    first_head = verify_ledger(out / "bastion" / "ledger.jsonl")
    make_run_dir(out, run_id="second", files={"adapter_model.safetensors": b"new weights"})
    pred = RunPredicate.parse(load_statement(out / "bastion" / "statement.json")["predicate"])
    assert pred.run_id == "second"
    prev = pred.previous_run
    assert prev is not None and (prev.run_id, prev.status) == ("first", "finished")
    assert prev.ledger_file == "bastion/previous/1-first/ledger.jsonl"
    verify_ledger(out / prev.ledger_file, expected_head=first_head.head, expected_entries=first_head.entries)
    assert (out / "bastion" / "previous" / "1-first" / "statement.json").is_file()
    subjects = {s["name"] for s in load_statement(out / "bastion" / "statement.json")["subject"]}
    assert subjects == {"adapter_model.safetensors"}  # the first run's other files are not this run's
    assert {f.name for f in prev.files} >= {"adapter_config.json", "nested/README.md"}


def test_reopen_refuses_what_it_cannot_vouch_for(tmp_path: Path) -> None:
    out = make_run_dir(tmp_path / "out")
    statement = out / "bastion" / "statement.json"
    st = json.loads(statement.read_text(encoding="utf-8"))
    st["predicate"]["datasets"][0]["digest"] = "aa"
    statement.write_text(json.dumps(st), encoding="utf-8")
    with pytest.raises(PredicateError, match=r"predicate.datasets\[0\].digest: expected an object"):
        RunRecorder.reopen(out)
    out2 = make_run_dir(tmp_path / "out2")
    ledger = out2 / "bastion" / "ledger.jsonl"
    ledger.write_text("".join(ledger.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    with pytest.raises(LedgerVerificationError, match=r"truncated|entries"):
        RunRecorder.reopen(out2)
    with pytest.raises(InputError, match="statement not found"):
        RunRecorder.reopen(tmp_path / "nothing")


def test_add_entry_copy_record_and_seal(tmp_path: Path) -> None:
    out = make_run_dir(tmp_path / "out")
    merged = out / "merged"
    merged.mkdir()
    (merged / "model.safetensors").write_bytes(b"m")
    rec = RunRecorder.reopen(out)
    rec.add_entry("merge", {"path": "merged", "method": "x"}, details={"path": "merged", "method": "x"})
    copy = load_statement(rec.copy_record(merged))
    main = load_statement(rec.seal())
    assert kinds(out / "bastion" / "ledger.jsonl")[-2:] == ["merge", "outputs"]
    assert {"merged/model.safetensors", "merged/bastion/statement.json"} <= {s["name"] for s in main["subject"]}
    assert [s["name"] for s in copy["subject"]] == ["model.safetensors"]
    assert main["predicate"]["merge"] == {"path": "merged", "method": "x"} == copy["predicate"]["merge"]
    led = copy["predicate"]["ledger"]
    verify_ledger(merged / led["path"], expected_head=led["head"], expected_entries=led["entries"])


def test_a_damaged_earlier_ledger_does_not_disable_a_new_run(tmp_path: Path) -> None:
    out = make_run_dir(tmp_path / "out", run_id="killed")
    with open(out / "bastion" / "ledger.jsonl", "ab") as fh:
        fh.write(b'{"data":{"step":3},"hash":"ab')  # a line torn by a kill mid-write
    rec = RunRecorder(fsync="never", run_id="next")
    assert rec.start(out)
    (out / "w.bin").write_bytes(b"w")
    rec.train_end(0, 0)
    pred = RunPredicate.parse(load_statement(rec.finalize())["predicate"])
    prev = pred.previous_run
    assert prev is not None and prev.status == "damaged" and prev.ledger_head is None
    assert any("the earlier run's ledger does not verify" in w and "line" in w for w in pred.warnings)
    assert (out / prev.ledger_file).read_bytes().endswith(b'"hash":"ab')  # kept as found


def test_resuming_over_a_damaged_ledger_names_the_cause_and_the_repair(tmp_path: Path) -> None:
    out = make_run_dir(tmp_path / "out")
    with open(out / "bastion" / "ledger.jsonl", "ab") as fh:
        fh.write(b'{"torn')
    rec = RunRecorder(fsync="never")
    assert rec.start(out, resumed_at_step=2) is False
    assert "cannot continue the ledger of the run being resumed" in rec.warnings[-1]  # the cause
    assert "bastion ledger repair" in rec.warnings[-1]  # and what to do
    with pytest.raises(ConfigError, match=r"recording could not start .*cannot continue the ledger"):
        rec.finalize()
    strict = RunRecorder(fsync="never", strict=True)
    with pytest.raises(LedgerError, match="cannot continue") as info:
        strict.start(out, resumed_at_step=2)
    assert "bastion ledger repair" in str(info.value)
