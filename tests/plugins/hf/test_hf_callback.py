"""Real transformers Trainer runs (LoRA on the tiny local model) with the provenance callback."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import StepCounter, files_in, make_trainer, read_ledger, sha256

from bastion.errors import ConfigError, InputError
from bastion.plugins.hf import BastionCallback, DatasetInput
from bastion.provenance import PREDICATE_TYPE, canonical_digest, load_statement, verify_ledger
from bastion.provenance.datasets import record_digest

PREDICATE_KEYS = {
    "run_id",
    "framework",
    "base_model",
    "tokenizer",
    "datasets",
    "config",
    "environment",
    "metrics",
    "ledger",
    "overlap",
    "started_at",
    "finished_at",
    "bastion_version",
}


def check_record(out: Path, trainer: Any, cb: BastionCallback) -> dict[str, Any]:
    """The invariants every finished run record must satisfy; returns the statement."""
    statement = load_statement(out / "bastion" / "statement.json")
    pred = statement["predicate"]
    assert statement["predicateType"] == PREDICATE_TYPE
    assert pred.keys() >= PREDICATE_KEYS
    # Subjects are exactly the output files (the run record itself left out), with their digests.
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == files_in(out)
    # The ledger verifies against the head and length pinned in the statement.
    ledger = out / "bastion" / "ledger.jsonl"
    head = verify_ledger(ledger, expected_head=pred["ledger"]["head"], expected_entries=pred["ledger"]["entries"])
    assert head.entries == pred["ledger"]["entries"]
    entries = read_ledger(out / "bastion" / "ledger.jsonl")
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "run.start" and kinds[-1] == "outputs"
    assert "inputs" in kinds and "train.end" in kinds
    # Every Trainer log call is in the ledger with the same step and values.
    logged = [(e["data"]["step"], e["data"]["metrics"]) for e in entries if e["kind"] == "log"]
    history = trainer.state.log_history
    assert len(logged) == len(history)
    for (step, metrics), h in zip(logged, history, strict=True):
        assert step == h["step"]
        for k, v in h.items():
            if k != "step" and isinstance(v, (int, float)):
                assert metrics[k] == pytest.approx(v)
    # The hashing ran off the training thread.
    assert cb.hash_threads and threading.current_thread().name not in cb.hash_threads
    assert all(name.startswith("bastion-hash") for name in cb.hash_threads)
    return statement


def test_trainer_lora_run_record(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = {"lora": {"r": 4, "alpha": 8}, "lr": 5e-5}
    cb = BastionCallback(
        base_model=tiny_model_dir,
        datasets=[DatasetInput(data["train"], "train"), DatasetInput(data["eval"], "eval")],
        config=config,
        framework="transformers",
    )
    trainer = make_trainer(tiny_model_dir, out, data["train"], data["eval"], [cb], max_steps=4, save_steps=2)
    trainer.train()
    trainer.save_model()
    path = cb.finalize()
    assert path == out / "bastion" / "statement.json"
    statement = check_record(out, trainer, cb)
    pred = statement["predicate"]

    # Input digests are the files' SHA-256.
    model_files = {f["name"]: f["digest"]["sha256"] for f in pred["base_model"]["files"]}
    assert model_files == {p.name: sha256(p) for p in tiny_model_dir.iterdir()}
    assert pred["tokenizer"] == pred["base_model"]  # tokenizer defaults to the model dir
    by_role = {d["role"]: d for d in pred["datasets"]}
    assert by_role["train"]["digest"]["sha256"] == sha256(data["train"])
    assert by_role["eval"]["digest"]["sha256"] == sha256(data["eval"])
    assert by_role["train"]["records"] == 64 and by_role["eval"]["records"] == 16
    assert pred["overlap"] == {"train_eval_records": 0}
    assert pred["config"]["value"] == config
    assert pred["config"]["digest"]["sha256"] == canonical_digest(config)
    assert pred["metrics"]["global_step"] == 4
    assert "train_loss" in pred["metrics"]["final"]

    # Both checkpoints were hashed, with the digests of their files.
    entries = read_ledger(out / "bastion" / "ledger.jsonl")
    ckpts = {e["data"]["path"]: e["data"] for e in entries if e["kind"] == "checkpoint"}
    assert set(ckpts) == {"checkpoint-2", "checkpoint-4"}
    for rel, data_ in ckpts.items():
        expected = {p.relative_to(out / rel).as_posix(): sha256(p) for p in (out / rel).rglob("*") if p.is_file()}
        assert {f["name"]: f["digest"]["sha256"] for f in data_["files"]} == expected

    # finalize() is idempotent: same path, ledger untouched.
    before = (out / "bastion" / "ledger.jsonl").read_bytes()
    assert cb.finalize() == path
    assert (out / "bastion" / "ledger.jsonl").read_bytes() == before


def test_overlap_between_train_and_eval_is_counted(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    train_lines = data["train"].read_text(encoding="utf-8").splitlines()
    # 5 eval records copied from train, re-serialized with another key order and spacing: still the same records.
    leaked = [
        json.dumps(dict(reversed(list(json.loads(line).items()))), separators=(", ", ": ")) for line in train_lines[:5]
    ]
    fresh = data["eval"].read_text(encoding="utf-8").splitlines()[:3]
    eval_path = tmp_path / "eval-leaky.jsonl"
    eval_path.write_text("\n".join(leaked + fresh) + "\n", encoding="utf-8")
    assert {record_digest(json.loads(x)) for x in leaked} <= {record_digest(json.loads(x)) for x in train_lines}

    out = tmp_path / "out"
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"], DatasetInput(eval_path, role="eval")])
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb], max_steps=1)
    trainer.train()
    trainer.save_model()
    cb.finalize()
    pred = check_record(out, trainer, cb)["predicate"]
    assert pred["overlap"] == {"train_eval_records": 5}
    warnings = [e["data"] for e in read_ledger(out / "bastion" / "ledger.jsonl") if e["kind"] == "warning"]
    assert [w["code"] for w in warnings] == ["data.overlap"]


def test_non_main_process_writes_nothing(tmp_path: Path, data: dict[str, Path], tiny_model_dir: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    out = tmp_path / "out"
    out.mkdir()
    args = TrainingArguments(output_dir=str(out), report_to=[], use_cpu=True)
    state = TrainerState(is_world_process_zero=False, is_local_process_zero=False)
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"]], strict=True)
    control = TrainerControl()
    cb.on_train_begin(args, state, control)
    state.global_step = 1
    cb.on_log(args, state, control, logs={"loss": 1.0})
    cb.on_save(args, state, control)
    cb.on_train_end(args, state, control)
    assert cb.finalize() is None
    assert list(out.iterdir()) == []
    assert cb.hash_threads == set()


def test_non_zero_process_index_writes_nothing(tmp_path: Path, data: dict[str, Path]) -> None:
    from types import SimpleNamespace

    from transformers import TrainerControl, TrainerState

    out = tmp_path / "out"
    out.mkdir()
    args = SimpleNamespace(output_dir=str(out), process_index=1)  # rank 1 of a multi-process run
    cb = BastionCallback(datasets=[data["train"]])
    cb.on_train_begin(args, TrainerState(), TrainerControl())  # type: ignore[arg-type]
    cb.on_log(args, TrainerState(), TrainerControl(), logs={"loss": 1.0})  # type: ignore[arg-type]
    assert cb.finalize() is None
    assert list(out.iterdir()) == []


def test_strict_missing_dataset_fails_before_first_step(
    tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "train.jsonl"
    counter = StepCounter()
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[missing], strict=True)
    out = tmp_path / "out"
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb, counter], max_steps=2)
    with pytest.raises(InputError) as err:
        trainer.train()
    assert str(missing) in str(err.value)
    assert "not found" in str(err.value)
    assert counter.steps == 0 and trainer.state.global_step == 0
    assert not (out / "bastion" / "ledger.jsonl").exists()  # no partial record


def test_non_strict_missing_dataset_trains_and_records_a_warning(
    tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "nowhere" / "extra.jsonl"
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"], missing])
    out = tmp_path / "out"
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb], max_steps=2)
    with caplog.at_level("WARNING", logger="bastion"):
        trainer.train()
    assert trainer.state.global_step == 2
    trainer.save_model()
    cb.finalize()
    pred = check_record(out, trainer, cb)["predicate"]
    warnings = [e["data"] for e in read_ledger(out / "bastion" / "ledger.jsonl") if e["kind"] == "warning"]
    assert len(warnings) == 1 and str(missing) in warnings[0]["message"]
    assert [d["name"] for d in pred["datasets"]] == ["train.jsonl"]
    assert any(str(missing) in w for w in pred["warnings"])
    assert any(str(missing) in r.getMessage() for r in caplog.records)


def test_bad_jsonl_line_is_reported_with_file_and_line(
    tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.jsonl"
    lines = data["train"].read_text(encoding="utf-8").splitlines()
    bad.write_text("\n".join([lines[0], lines[1], '{"messages": [oops', lines[2]]) + "\n", encoding="utf-8")

    # strict: raised from on_train_begin, before any step, naming file:line
    counter = StepCounter()
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[bad], strict=True)
    trainer = make_trainer(tiny_model_dir, tmp_path / "strict", data["train"], None, [cb, counter], max_steps=1)
    with pytest.raises(InputError) as err:
        trainer.train()
    assert f"{bad}:3" in str(err.value) and "not valid JSON" in str(err.value)
    assert err.value.line == 3
    assert counter.steps == 0
    # The aborted run's ledger is closed with a verifiable "run.aborted" entry, and finalize() says why.
    strict_ledger = tmp_path / "strict" / "bastion" / "ledger.jsonl"
    verify_ledger(strict_ledger)
    assert read_ledger(strict_ledger)[-1]["kind"] == "run.aborted"
    with pytest.raises(ConfigError, match="aborted"):
        cb.finalize()

    # non-strict: the run completes; the warning in the ledger names file:line
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[bad])
    out = tmp_path / "lenient"
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb], max_steps=1)
    trainer.train()
    trainer.save_model()
    cb.finalize()
    warnings = [e["data"] for e in read_ledger(out / "bastion" / "ledger.jsonl") if e["kind"] == "warning"]
    assert len(warnings) == 1 and f"{bad}:3" in warnings[0]["message"]
    assert '"messages"' not in warnings[0]["message"]  # the record's content is never echoed


def test_model_dir_that_cannot_be_hashed(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    # A model dir whose weights file is a link to a file outside it cannot be hashed as a unit
    # (its digest would depend on something not shipped with it).
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    outside = tmp_path / "elsewhere.safetensors"
    (model / "model.safetensors").rename(outside)
    (model / "model.safetensors").symlink_to(outside)
    cb = BastionCallback(base_model=model, datasets=[data["train"]], strict=True)
    trainer = make_trainer(tiny_model_dir, tmp_path / "out", data["train"], None, [cb], max_steps=1)
    with pytest.raises(InputError) as err:
        trainer.train()
    assert "model.safetensors" in str(err.value) and "outside" in str(err.value)

    missing = tmp_path / "no-such-model"
    cb = BastionCallback(base_model=missing, strict=True)
    trainer = make_trainer(tiny_model_dir, tmp_path / "out2", data["train"], None, [cb], max_steps=1)
    with pytest.raises(InputError, match="base model not found"):
        trainer.train()


def test_output_dir_vanished_before_finalize(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"]])
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb], max_steps=1)
    trainer.train()
    shutil.rmtree(out)
    with pytest.raises(InputError) as err:
        cb.finalize()
    assert str(out) in str(err.value) and "no longer exists" in str(err.value)


def test_finalize_without_training_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="training never began"):
        BastionCallback().finalize()


def test_config_file_and_bad_config(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    cfg = tmp_path / "train.yaml"
    cfg.write_text("base_model: tiny\nlora_r: 4\nlearning_rate: 0.0002\n", encoding="utf-8")
    out = tmp_path / "out"
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"]], config=cfg, framework="axolotl")
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb], max_steps=1)
    trainer.train()
    trainer.save_model()
    pred = load_statement(cb.finalize() or Path()).get("predicate", {})
    assert pred["framework"] == "axolotl"
    assert pred["config"]["value"] == {"base_model": "tiny", "lora_r": 4, "learning_rate": 0.0002}
    assert pred["config"]["source"] == "train.yaml"

    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n", encoding="utf-8")
    cb = BastionCallback(config=bad, strict=True)
    trainer = make_trainer(tiny_model_dir, tmp_path / "out2", data["train"], None, [cb], max_steps=1)
    with pytest.raises(InputError) as err:
        trainer.train()
    assert str(bad) in str(err.value) and err.value.line is not None


def test_non_finite_metrics_are_kept_canonical(tmp_path: Path) -> None:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    out = tmp_path / "out"
    args = TrainingArguments(output_dir=str(out), report_to=[], use_cpu=True)
    state, control = TrainerState(), TrainerControl()
    cb = BastionCallback()
    cb.on_train_begin(args, state, control)
    state.global_step, state.epoch = 1, 0.5
    cb.on_log(args, state, control, logs={"loss": float("nan"), "grad_norm": float("inf"), "lr": 1e-4, "note": "x"})
    cb.on_train_end(args, state, control)
    (out / "adapter.bin").write_bytes(b"weights")
    statement = load_statement(cb.finalize() or Path())
    log = next(e for e in read_ledger(out / "bastion" / "ledger.jsonl") if e["kind"] == "log")
    assert log["data"]["metrics"] == {"lr": 1e-4}
    assert log["data"]["non_finite"] == {"loss": "NaN", "grad_norm": "Infinity"}
    assert statement["predicate"]["metrics"]["non_finite"] == {"loss": "NaN", "grad_norm": "Infinity"}
    weights = hashlib.sha256(b"weights").hexdigest()
    assert statement["subject"] == [{"name": "adapter.bin", "digest": {"sha256": weights}}]
    verify_ledger(out / "bastion" / "ledger.jsonl", expected_head=statement["predicate"]["ledger"]["head"])


def test_forgotten_finalize_is_done_at_interpreter_exit(tmp_path: Path) -> None:
    """A real process that never calls finalize(): the record is still written, and signed, at exit
    (hashing and model_signing both need thread pools, which must still work at that point)."""
    import subprocess
    import sys

    from bastion.provenance.signing import generate_key_pair
    from bastion.provenance.verify import verify

    keys = generate_key_pair(tmp_path / "keys")
    out = tmp_path / "out"
    script = tmp_path / "forgetful.py"
    script.write_text(
        f"""
from pathlib import Path
from transformers import TrainerControl, TrainerState, TrainingArguments
from bastion.plugins.hf import BastionCallback
out = Path({str(out)!r})
args = TrainingArguments(output_dir=str(out), report_to=[], use_cpu=True)
cb = BastionCallback(signing={{"backend": "key", "private_key": {str(keys.private_key)!r}}})
cb.on_train_begin(args, TrainerState(), TrainerControl())
cb.on_train_end(args, TrainerState(), TrainerControl())
for name in ("a.bin", "b.bin", "c.bin"):
    (out / name).write_bytes(name.encode())
""",
        encoding="utf-8",
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "finalize() was not called" in proc.stderr
    assert (out / "bastion" / "statement.json").is_file()
    report = verify(out, public_key=keys.public_key)
    assert report.ok, report.lines()


def test_bad_role_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown role 'test'"):
        DatasetInput(Path("x.jsonl"), role="test")
