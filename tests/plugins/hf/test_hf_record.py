"""Run-record details that need no training loop: the Trainer's hooks are called directly, as the Trainer would."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hf_helpers import files_in, read_ledger
from hypothesis import given
from hypothesis import strategies as st

from bastion.errors import InputError
from bastion.plugins.hf import BastionCallback, DatasetInput
from bastion.plugins.hf.callback import clean_metrics
from bastion.provenance import canonical_json, load_statement, verify_ledger
from bastion.provenance.redaction import REDACTED


def _hooks(out: Path) -> tuple[Any, Any, Any]:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    return TrainingArguments(output_dir=str(out), report_to=[], use_cpu=True), TrainerState(), TrainerControl()


def test_secrets_in_config_are_never_recorded(tmp_path: Path) -> None:
    secret = "hf_abcdefSECRET123"
    out = tmp_path / "out"
    config = {
        "base_model": "tiny",
        "hf_token": secret,
        "wandb": {"wandb_api_key": secret, "project": "p"},
        "pad_token": "<pad>",  # a special token, not a credential: kept
        "signing": {"backend": "key", "password_env": "KEY_PASSWORD"},  # a variable NAME: kept
    }
    args, state, control = _hooks(out)
    cb = BastionCallback(config=config)
    cb.on_train_begin(args, state, control)
    cb.on_train_end(args, state, control)
    (out / "model.bin").write_bytes(b"m")
    pred = load_statement(cb.finalize() or Path())["predicate"]
    assert pred["config"]["value"]["hf_token"] == REDACTED
    assert pred["config"]["value"]["wandb"] == {"wandb_api_key": REDACTED, "project": "p"}
    assert pred["config"]["value"]["pad_token"] == "<pad>"
    assert pred["config"]["value"]["signing"]["password_env"] == "KEY_PASSWORD"
    for f in (out / "bastion").iterdir():
        assert secret not in f.read_text(encoding="utf-8")


def test_finalize_into_another_output_dir(tmp_path: Path) -> None:
    out, final = tmp_path / "out", tmp_path / "final"
    args, state, control = _hooks(out)
    cb = BastionCallback()
    cb.on_train_begin(args, state, control)
    state.global_step = 1
    cb.on_log(args, state, control, logs={"loss": 2.5})
    cb.on_train_end(args, state, control)
    final.mkdir()
    (final / "adapter_model.safetensors").write_bytes(b"\x00" * 64)
    path = cb.finalize(final)
    assert path == final / "bastion" / "statement.json"
    statement = load_statement(path)
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == files_in(final)
    led = statement["predicate"]["ledger"]
    verify_ledger(final / "bastion" / "ledger.jsonl", expected_head=led["head"], expected_entries=led["entries"])


def test_reusing_a_finalized_callback_is_reported(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    args, state, control = _hooks(out)
    cb = BastionCallback()
    cb.on_train_begin(args, state, control)
    cb.on_train_end(args, state, control)
    (out / "w.bin").write_bytes(b"w")
    cb.finalize()
    before = (out / "bastion" / "ledger.jsonl").read_bytes()
    with caplog.at_level("WARNING", logger="bastion"):
        cb.on_train_begin(args, state, control)
    assert any("new BastionCallback" in r.getMessage() or "already recorded" in r.getMessage() for r in caplog.records)
    assert (out / "bastion" / "ledger.jsonl").read_bytes() == before
    strict = BastionCallback(strict=True)
    strict.on_train_begin(*_hooks(tmp_path / "o2"))
    strict.on_train_end(*_hooks(tmp_path / "o2"))
    (tmp_path / "o2" / "w.bin").write_bytes(b"w")
    strict.finalize()
    with pytest.raises(Exception, match="already recorded a run"):
        strict.on_train_begin(*_hooks(tmp_path / "o2"))


def test_checkpoint_vanishing_before_it_is_hashed_is_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args, state, control = _hooks(out)
    cb = BastionCallback()
    cb.on_train_begin(args, state, control)
    state.global_step = 3
    cb.on_save(args, state, control)  # checkpoint-3 was never written (e.g. rotated away)
    cb.on_train_end(args, state, control)
    (out / "w.bin").write_bytes(b"w")
    cb.finalize()
    warnings = [e["data"] for e in read_ledger(out / "bastion" / "ledger.jsonl") if e["kind"] == "warning"]
    assert len(warnings) == 1 and "checkpoint-3" in warnings[0]["message"]
    assert warnings[0]["code"] == "checkpoint.hash"


metric_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.text(max_size=5),
    st.none(),
    st.lists(st.integers(), max_size=2),
)


@given(st.dictionaries(st.text(min_size=1, max_size=8), metric_values, max_size=8))
def test_clean_metrics_always_canonicalizes(logs: dict[str, Any]) -> None:
    numbers, nonfinite = clean_metrics(logs)
    canonical_json({"metrics": numbers, "non_finite": nonfinite})  # never raises
    for key, value in logs.items():
        if isinstance(value, float) and not math.isfinite(value):
            assert nonfinite[key] in ("NaN", "Infinity", "-Infinity") and key not in numbers
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            assert numbers[key] == pytest.approx(value)
        else:
            assert key not in numbers and key not in nonfinite


@pytest.mark.parametrize("strict", [False, True])
def test_on_train_begin_waits_for_hashing_only_when_strict(tiny_model_dir: Path, tmp_path: Path, strict: bool) -> None:
    import shutil
    from datetime import UTC, datetime

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    with open(model / "extra-weights.bin", "wb") as fh:  # sparse: no disk used, but every byte is hashed
        fh.truncate(256 << 20)
    out = tmp_path / "out"
    args, state, control = _hooks(out)
    cb = BastionCallback(base_model=model, strict=strict)
    cb.on_train_begin(args, state, control)
    returned_at = datetime.now(UTC)
    cb.on_train_end(args, state, control)
    (out / "w.bin").write_bytes(b"w")
    cb.finalize()
    inputs = next(e for e in read_ledger(out / "bastion" / "ledger.jsonl") if e["kind"] == "inputs")
    hashed_at = datetime.strptime(inputs["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    if strict:
        assert hashed_at < returned_at  # strict: inputs are recorded before the first step can run
    else:
        assert hashed_at > returned_at  # lenient: training starts while the hashing thread works
    assert inputs["data"]["base_model"]["files"] == 7


def test_resumed_run_continues_the_same_ledger(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    from hf_helpers import make_trainer

    out = tmp_path / "out"
    first = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"]])
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [first], max_steps=2, save_steps=2)
    trainer.train()
    trainer.save_model()
    first_statement = load_statement(first.finalize() or Path())

    second = BastionCallback(base_model=tiny_model_dir, datasets=[data["train"]])
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [second], max_steps=4, save_steps=2)
    trainer.train(resume_from_checkpoint=str(out / "checkpoint-2"))
    trainer.save_model()
    statement = load_statement(second.finalize() or Path())
    led = statement["predicate"]["ledger"]
    verify_ledger(out / "bastion" / "ledger.jsonl", expected_head=led["head"], expected_entries=led["entries"])
    entries = read_ledger(out / "bastion" / "ledger.jsonl")
    starts = [e for e in entries if e["kind"] == "run.start"]
    assert [s["data"]["run_id"] for s in starts] == [first.run_id, second.run_id]
    assert starts[1]["data"]["resumed_at_step"] == 2
    # The first run's record is a prefix of the second's: its head is still in the chain.
    assert first_statement["predicate"]["ledger"]["head"] in {e["hash"] for e in entries}
    names = {s["name"] for s in statement["subject"]}
    assert {"checkpoint-2/adapter_model.safetensors", "checkpoint-4/adapter_model.safetensors"} <= names


def test_dataset_directory_is_hashed_per_file(tmp_path: Path, data: dict[str, Path]) -> None:
    from hf_helpers import sha256

    lines = data["train"].read_text(encoding="utf-8").splitlines()
    shards = tmp_path / "train-shards"
    shards.mkdir()
    (shards / "part-0.jsonl").write_text("\n".join(lines[:30]) + "\n", encoding="utf-8")
    (shards / "part-1.jsonl").write_text("\n".join(lines[30:]) + "\n", encoding="utf-8")
    (shards / "dataset_info.json").write_text('{"description": "shards"}', encoding="utf-8")
    leaky = tmp_path / "eval.jsonl"
    leaky.write_text("\n".join([lines[40], lines[50]]) + "\n" + data["eval"].read_text(encoding="utf-8"), "utf-8")
    out = tmp_path / "out"
    args, state, control = _hooks(out)
    cb = BastionCallback(datasets=[shards, DatasetInput(leaky, role="eval")], strict=True)
    cb.on_train_begin(args, state, control)
    cb.on_train_end(args, state, control)
    (out / "w.bin").write_bytes(b"w")
    pred = load_statement(cb.finalize() or Path())["predicate"]
    by_name = {d["name"]: d for d in pred["datasets"]}
    assert set(by_name) == {
        "train-shards/dataset_info.json",
        "train-shards/part-0.jsonl",
        "train-shards/part-1.jsonl",
        "eval.jsonl",
    }
    assert by_name["train-shards/part-1.jsonl"]["records"] == 34
    assert by_name["train-shards/part-1.jsonl"]["digest"]["sha256"] == sha256(shards / "part-1.jsonl")
    assert "records" not in by_name["train-shards/dataset_info.json"]
    assert pred["overlap"] == {"train_eval_records": 2}

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no files"):
        BastionCallback(datasets=[empty], strict=True).on_train_begin(*_hooks(tmp_path / "o2"))


def test_local_absolute_paths_are_recorded_relative(tmp_path: Path) -> None:
    out = tmp_path / "runs" / "out"
    args, state, control = _hooks(out)
    config = {"output_dir": str(out), "deepspeed": str(Path.home() / "ds.json"), "data": "/srv/data/train.jsonl"}
    cb = BastionCallback(config=config)
    cb.on_train_begin(args, state, control)
    cb.on_train_end(args, state, control)
    (out / "model.bin").write_bytes(b"m")
    pred = load_statement(cb.finalize() or Path())["predicate"]
    targs = pred["training_arguments"]["value"]
    assert targs["output_dir"] == "<output_dir>"
    assert pred["config"]["value"] == {
        "output_dir": "<output_dir>",
        "deepspeed": "~/ds.json",
        "data": "/srv/data/train.jsonl",  # under no local anchor: kept
    }
    text = (out / "bastion" / "statement.json").read_text(encoding="utf-8")
    assert str(tmp_path) not in text


def test_a_warning_quoting_a_credential_is_recorded_without_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args, state, control = _hooks(out)
    cb = BastionCallback()
    cb.on_train_begin(args, state, control)
    cb.warn("could not reach postgresql://trainer:Pg9-secret@db.internal/runs for the run index", "index")
    cb.on_train_end(args, state, control)
    (out / "model.bin").write_bytes(b"m")
    pred = load_statement(cb.finalize() or Path())["predicate"]
    assert "could not reach postgresql://trainer:[REDACTED]@db.internal/runs for the run index" in pred["warnings"]
    for f in (out / "bastion").iterdir():
        assert "Pg9-secret" not in f.read_text(encoding="utf-8")
