"""A run killed with SIGKILL mid-training, then a new run in the same output directory.

The killed process is a real Trainer run in a subprocess; the test waits for its checkpoints to be
recorded (it reads the child's ``saved <step>`` lines) and kills it then: no sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hf_helpers import StepCounter, files_in, make_trainer, read_ledger

from bastion.errors import ConfigError
from bastion.plugins.hf import BastionCallback
from bastion.provenance import load_statement, verify_ledger
from bastion.provenance.predicate import RunPredicate

SCRIPT = Path(__file__).with_name("killed_run_script.py")


def kill_after_two_checkpoints(model_dir: Path, train: Path, out: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(model_dir), str(train), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.strip() == "saved 2":
                break
        else:
            raise AssertionError(f"the run ended before its second checkpoint: {proc.wait()} {proc.stderr.read()}")  # type: ignore[union-attr]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def killed(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> Path:
    out = tmp_path / "out"
    kill_after_two_checkpoints(tiny_model_dir, data["train"], out)
    kinds = [e["kind"] for e in read_ledger(out / "bastion" / "ledger.jsonl")]
    # Killed: the ledger verifies, has its checkpoints, and no end (nothing ran at exit).
    assert kinds.count("run.start") == 1 and kinds.count("checkpoint") >= 2
    assert "train.end" not in kinds and "outputs" not in kinds and "run.aborted" not in kinds
    assert not (out / "bastion" / "statement.json").exists()
    return out


def test_a_new_run_in_a_killed_runs_directory_starts_a_new_chain(
    killed: Path, tiny_model_dir: Path, data: dict[str, Path]
) -> None:
    out = killed
    old_ledger = out / "bastion" / "ledger.jsonl"
    old_entries = read_ledger(old_ledger)
    old_head = verify_ledger(old_ledger)
    old_files = files_in(out)
    assert {"checkpoint-1/adapter_model.safetensors", "checkpoint-2/adapter_model.safetensors"} <= set(old_files)

    cb = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"]])
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb], max_steps=2)
    trainer.train()
    trainer.save_model()
    statement = load_statement(cb.finalize() or Path())

    entries = read_ledger(out / "bastion" / "ledger.jsonl")
    assert [e["kind"] for e in entries].count("run.start") == 1  # one run per chain
    assert entries[0]["data"]["run_id"] == cb.run_id
    pred = RunPredicate.parse(statement["predicate"])
    prev = pred.previous_run
    assert prev is not None
    assert prev.run_id == old_entries[0]["data"]["run_id"] and prev.status == "unfinished"
    assert (prev.ledger_head, prev.ledger_entries) == (old_head.head, old_head.entries)
    assert entries[0]["data"]["previous_run"]["ledger_head"] == old_head.head
    # The old ledger is kept where the record says, and still verifies against the named head.
    verify_ledger(out / prev.ledger_file, expected_head=prev.ledger_head, expected_entries=prev.ledger_entries)
    # The killed run's checkpoints are not this run's outputs; they are named as left over.
    subjects = {s["name"] for s in statement["subject"]}
    assert not any(name.startswith("checkpoint-") for name in subjects)
    assert "adapter_model.safetensors" in subjects
    left = {f.name: f.sha256 for f in prev.files}
    assert left["checkpoint-2/adapter_model.safetensors"] == old_files["checkpoint-2/adapter_model.safetensors"]
    assert "adapter_model.safetensors" not in left  # written by this run
    assert any("already held the record of run" in w for w in pred.warnings)
    led = pred.ledger
    verify_ledger(out / led.path, expected_head=led.head, expected_entries=led.entries)


def test_strict_refuses_a_killed_runs_directory_before_the_first_step(
    killed: Path, tiny_model_dir: Path, data: dict[str, Path]
) -> None:
    before = (killed / "bastion" / "ledger.jsonl").read_bytes()
    counter = StepCounter()
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"]], strict=True)
    trainer = make_trainer(tiny_model_dir, killed, data["train"], None, [cb, counter], max_steps=2)
    with pytest.raises(ConfigError, match=r"already holds the record of run .* \(unfinished") as info:
        trainer.train()
    assert "fresh output_dir" in str(info.value)
    assert counter.steps == 0
    assert (killed / "bastion" / "ledger.jsonl").read_bytes() == before  # left alone


def test_resuming_a_killed_run_marks_it_aborted_and_continues_its_chain(
    killed: Path, tiny_model_dir: Path, data: dict[str, Path]
) -> None:
    old_run = read_ledger(killed / "bastion" / "ledger.jsonl")[0]["data"]["run_id"]
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"]])
    trainer = make_trainer(tiny_model_dir, killed, data["train"], None, [cb], max_steps=3)
    trainer.train(resume_from_checkpoint=str(killed / "checkpoint-2"))
    trainer.save_model()
    statement = load_statement(cb.finalize() or Path())
    entries = read_ledger(killed / "bastion" / "ledger.jsonl")
    kinds = [e["kind"] for e in entries]
    second_start = [i for i, k in enumerate(kinds) if k == "run.start"][1]
    assert entries[second_start - 1]["kind"] == "run.aborted"
    assert entries[second_start - 1]["data"]["run_id"] == old_run
    assert entries[second_start]["data"]["resumed_at_step"] == 2
    assert "previous_run" not in statement["predicate"]
    assert "checkpoint-2/adapter_model.safetensors" in {s["name"] for s in statement["subject"]}


def test_sigterm_records_run_aborted(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(tiny_model_dir), str(data["train"]), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.strip() == "saved 1":
                proc.send_signal(signal.SIGTERM)
                break
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGTERM  # the default action still ends the process
    last = read_ledger(out / "bastion" / "ledger.jsonl")[-1]
    assert last["kind"] == "run.aborted" and last["data"]["reason"] == "terminated by SIGTERM"
    verify_ledger(out / "bastion" / "ledger.jsonl")
    assert json.loads(json.dumps(last))  # a whole, parseable last line


def test_an_exception_that_ends_the_process_records_run_aborted_with_its_type(
    tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tiny_model_dir), str(data["train"]), str(out), "crash"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1 and "simulated crash" in proc.stderr
    last = read_ledger(out / "bastion" / "ledger.jsonl")[-1]
    assert last["kind"] == "run.aborted"
    assert last["data"]["reason"] == "process exited before training ended (uncaught RuntimeError)"
    assert "simulated crash" not in (out / "bastion" / "ledger.jsonl").read_text()  # the type, never the message
    verify_ledger(out / "bastion" / "ledger.jsonl")
