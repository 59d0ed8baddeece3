"""Real LLaMA-Factory runs (stage sft and dpo, LoRA, CPU) launched as users do: ``bastion llamafactory train``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from lf_support import base_config, write_yaml

pytestmark = [pytest.mark.framework, pytest.mark.timeout(600)]

SECRET = "hf_NOT_A_REAL_TOKEN_0123456789"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ledger(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "bastion" / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]


def _names(ds: dict[str, Any]) -> list[tuple[str, str]]:
    files = ds["files"]
    return [(ds["name"] if len(files) == 1 else f"{ds['name']}/{Path(f).name}", f) for f in files]


def _check_record(out: Path, model: Path, expected: dict[str, dict[str, Path]]) -> dict[str, Any]:
    """Assertions shared by every stage; returns the statement."""
    from bastion.provenance.datasets import hash_dataset
    from bastion.provenance.hashing import hash_directory
    from bastion.provenance.ledger import verify_ledger

    statement = json.loads((out / "bastion" / "statement.json").read_text(encoding="utf-8"))
    pred = statement["predicate"]
    assert pred["framework"] == "llamafactory"

    # Subjects: exactly the files LLaMA-Factory left in output_dir (the record folder aside), with their digests.
    on_disk = {
        p.relative_to(out).as_posix(): _sha256(p)
        for p in out.rglob("*")
        if p.is_file() and p.relative_to(out).parts[0] != "bastion"
    }
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert subjects == on_disk
    assert "adapter_model.safetensors" in subjects  # LoRA weights saved by LLaMA-Factory before finalize

    # Base model and tokenizer: the local model dir, hashed as it is on disk.
    model_digest = hash_directory(model).sha256
    assert pred["base_model"]["digest"]["sha256"] == model_digest
    assert pred["tokenizer"]["digest"]["sha256"] == model_digest

    # Datasets resolved through dataset_info.json, one entry per file, digests equal to the files'.
    by_role: dict[str, dict[str, dict[str, Any]]] = {}
    for ds in pred["datasets"]:
        by_role.setdefault(ds["role"], {})[ds["name"]] = ds
    assert {role: sorted(v) for role, v in by_role.items()} == {role: sorted(v) for role, v in expected.items()}
    for role, files in expected.items():
        for name, f in files.items():
            d = by_role[role][name]
            assert d["digest"]["sha256"] == _sha256(f)
            assert d["merkle_root"] == hash_dataset(f).merkle_root
            assert d["records"] == hash_dataset(f).records
    resolved = {n: Path(f) for ds in pred["config"]["value"]["datasets"] for n, f in _names(ds)}
    assert resolved == {n: f for files in expected.values() for n, f in files.items()}

    # Every step the Trainer logged (LLaMA-Factory's trainer_state.json) is in the ledger.
    entries = _ledger(out)
    ledger = pred["ledger"]
    verify_ledger(out / ledger["path"], expected_head=ledger["head"], expected_entries=ledger["entries"])
    kinds = [e["kind"] for e in entries]
    assert kinds[0] == "run.start" and kinds[-1] == "outputs"
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    logged = [h for h in state["log_history"] if "loss" in h]
    assert len(logged) == state["global_step"]
    ledger_losses = {
        (e["data"]["step"], round(e["data"]["metrics"]["loss"], 6))
        for e in entries
        if e["kind"] == "log" and "loss" in e["data"].get("metrics", {})
    }
    assert {(h["step"], round(h["loss"], 6)) for h in logged} <= ledger_losses

    # The recorded config is the one LLaMA-Factory ran with, and the output dir is the configured one.
    cfg = pred["config"]["value"]
    assert cfg["output_dir"] == "<output_dir>"  # recorded relative: a local absolute path names the machine
    assert "bastion" not in cfg["llamafactory"]
    return statement


def _signing_section(tmp_path: Path) -> tuple[dict[str, Any], Path]:
    from bastion.provenance.signing import generate_key_pair

    keys = generate_key_pair(tmp_path / "keys")
    return {"signing": {"backend": "key", "private_key": str(keys.private_key)}}, keys.public_key


def _check_signature(out: Path, public_key: Path) -> None:
    from bastion.provenance.verify import verify

    report = verify(out, public_key=public_key)
    assert report.ok, report.as_dict()
    # Tampering with the trained adapter is caught.
    weights = out / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes() + b"\0")
    assert not verify(out, public_key=public_key).ok


def test_sft_lora_run_is_recorded_and_signed(tmp_path: Path, tiny_model: Path, lf_data: Path, launch: Any) -> None:
    out = tmp_path / "out-sft"
    cfg = base_config(tiny_model, lf_data, out, "sft")
    cfg["hf_hub_token"] = SECRET  # a credential in the config must not reach the record
    section, public_key = _signing_section(tmp_path)
    cfg["bastion"] = {"strict": True, **section}
    config = write_yaml(tmp_path / "sft.yaml", cfg)

    # key=value overrides after the file, as llamafactory-cli takes them.
    result = launch(str(config), "max_steps=3")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "run record written to" in result.stderr

    statement = _check_record(
        out,
        tiny_model,
        {
            "train": {"tiny_chat": lf_data / "chat" / "train.jsonl"},
            "eval": {"tiny_chat_eval": lf_data / "chat" / "eval.jsonl"},
        },
    )
    pred = statement["predicate"]
    state = json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))
    assert state["global_step"] == 3  # the override reached LLaMA-Factory
    assert pred["config"]["value"]["llamafactory"]["max_steps"] == 3
    assert pred["config"]["value"]["stage"] == "sft"
    assert pred["overlap"]["train_eval_records"] == 0
    assert any("eval_loss" in e["data"].get("metrics", {}) for e in _ledger(out) if e["kind"] == "log")
    for f in (out / "bastion").iterdir():
        assert SECRET not in f.read_text(encoding="utf-8", errors="replace"), f
    assert pred["config"]["value"]["llamafactory"]["hf_hub_token"] == "[REDACTED]"
    _check_signature(out, public_key)


def test_dpo_lora_run_records_preference_pairs(tmp_path: Path, tiny_model: Path, lf_data: Path, launch: Any) -> None:
    out = tmp_path / "out-dpo"
    cfg = base_config(tiny_model, lf_data, out, "dpo")
    section, public_key = _signing_section(tmp_path)
    config = write_yaml(tmp_path / "dpo.yaml", cfg)
    flags = ["--strict"] + (["--sign-key", section["signing"]["private_key"]] if section else [])

    # Two ranks under torchrun, as LLaMA-Factory launches multi-GPU jobs (its FORCE_TORCHRUN / NPROC_PER_NODE):
    # every rank trains with the callback, only rank 0 writes and signs the record.
    result = launch(*flags, str(config), env={"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": "2"})
    assert result.returncode == 0, result.stderr[-4000:]
    assert "world size: 2" in result.stdout + result.stderr
    assert result.stderr.count("run record written to") == 1

    # ranking: true in dataset_info.json -> preference; the folder's two files are both recorded.
    statement = _check_record(
        out,
        tiny_model,
        {
            "preference": {
                "tiny_pairs/part-0.json": lf_data / "pairs" / "part-0.json",
                "tiny_pairs/part-1.json": lf_data / "pairs" / "part-1.json",
            }
        },
    )
    pred = statement["predicate"]
    assert pred["config"]["value"]["stage"] == "dpo"
    dpo_metrics = [e["data"]["metrics"] for e in _ledger(out) if e["kind"] == "log"]
    assert any(any(k.startswith("rewards/") for k in m) for m in dpo_metrics)  # DPO's own metrics were logged
    _check_signature(out, public_key)


def test_python_run_exp_with_a_dict(tmp_path: Path, tiny_model: Path, lf_data: Path, monkeypatch: Any) -> None:
    """The Python form: ``run_exp(config_dict)`` with a ``bastion:`` section, in this process."""
    from lf_support import OFFLINE_ENV

    from bastion.plugins.llamafactory import run_exp

    for key, value in OFFLINE_ENV.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "out-py"
    cfg = base_config(tiny_model, lf_data, out, "sft")
    cfg.update(max_steps=2, eval_strategy="no", eval_dataset=None, bastion={"strict": True, "fsync": "always"})
    cfg.pop("eval_steps")
    statement_path = run_exp(cfg)
    assert statement_path == out / "bastion" / "statement.json"
    _check_record(out, tiny_model, {"train": {"tiny_chat": lf_data / "chat" / "train.jsonl"}})
    assert json.loads(statement_path.read_text(encoding="utf-8"))["predicate"]["strict"] is True


def test_val_size_split_is_recorded_as_two_derived_sides(
    tmp_path: Path, tiny_model: Path, lf_data: Path, launch: Any
) -> None:
    """A real run with ``val_size``: LLaMA-Factory carves its eval split from the training file, and the record
    holds both sides (parent digest, each side's records and Merkle root) with overlap computed over them."""
    import math

    from bastion.provenance.datasets import hash_dataset

    out = tmp_path / "out-val"
    cfg = base_config(tiny_model, lf_data, out, "sft")
    del cfg["eval_dataset"], cfg["max_samples"]  # Bastion redoes the carve only without max_samples
    cfg["val_size"] = 0.25
    config = write_yaml(tmp_path / "val.yaml", cfg)
    result = launch(str(config), "max_steps=2")
    assert result.returncode == 0, result.stderr[-4000:]

    pred = json.loads((out / "bastion" / "statement.json").read_text(encoding="utf-8"))["predicate"]
    sides = {d["split"]["side"]: d for d in pred["datasets"] if d.get("split")}
    assert set(sides) == {"train", "eval"}, [(d["name"], d["role"]) for d in pred["datasets"]]
    train, evals = sides["train"], sides["eval"]
    parent = hash_dataset(lf_data / "chat" / "train.jsonl")
    for side in (train, evals):
        assert side["split"]["parent"]["digest"]["sha256"] == _sha256(lf_data / "chat" / "train.jsonl")
        assert side["split"]["parent"]["merkle_root"] == parent.merkle_root
    assert evals["role"] == "eval" and train["role"] == "train"
    assert evals["records"] == math.ceil(0.25 * parent.records)
    assert train["records"] == parent.records - evals["records"]
    assert isinstance(pred["overlap"]["train_eval_records"], int)
