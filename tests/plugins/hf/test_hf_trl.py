"""TRL's SFTTrainer and DPOTrainer (both transformers Trainers) with the provenance callback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hf_helpers import files_in, read_ledger, sha256

from bastion.plugins.hf import BastionCallback, DatasetInput
from bastion.provenance import load_statement, verify_ledger


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _common(out: Path) -> dict[str, Any]:
    return {
        "output_dir": str(out),
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "use_cpu": True,
        "disable_tqdm": True,
        "max_length": 48,
        "seed": 3,
    }


def _assert_record(out: Path, trainer: Any, cb: BastionCallback, data_files: dict[str, Path]) -> dict[str, Any]:
    statement = load_statement(out / "bastion" / "statement.json")
    pred = statement["predicate"]
    verify_ledger(
        out / "bastion" / "ledger.jsonl",
        expected_head=pred["ledger"]["head"],
        expected_entries=pred["ledger"]["entries"],
    )
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == files_in(out)
    assert {d["role"]: d["digest"]["sha256"] for d in pred["datasets"]} == {r: sha256(p) for r, p in data_files.items()}
    entries = read_ledger(out / "bastion" / "ledger.jsonl")
    assert [e["data"]["step"] for e in entries if e["kind"] == "log"] == [h["step"] for h in trainer.state.log_history]
    assert pred["framework"] == "trl"
    assert "adapter_model.safetensors" in {s["name"] for s in statement["subject"]}
    return pred


def test_sft_trainer(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    out = tmp_path / "sft"
    cb = BastionCallback(
        base_model=tiny_model_dir,
        datasets=[DatasetInput(data["train"], "train"), DatasetInput(data["eval"], "eval")],
        framework="trl",
    )
    trainer = SFTTrainer(
        model=str(tiny_model_dir),
        args=SFTConfig(**_common(out)),
        train_dataset=Dataset.from_list(_rows(data["train"])),
        eval_dataset=Dataset.from_list(_rows(data["eval"])),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        callbacks=[cb],
    )
    trainer.train()
    trainer.save_model()
    cb.finalize()
    pred = _assert_record(out, trainer, cb, {"train": data["train"], "eval": data["eval"]})
    assert pred["overlap"] == {"train_eval_records": 0}
    assert pred["metrics"]["global_step"] == 2


def test_dpo_trainer(tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path) -> None:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    out = tmp_path / "dpo"
    cb = BastionCallback(
        base_model=tiny_model_dir,
        datasets=[DatasetInput(data["preference"], role="preference")],
        framework="trl",
        config={"trainer": "dpo", "beta": 0.1},
    )
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        args=DPOConfig(**_common(out), beta=0.1),
        train_dataset=Dataset.from_list(_rows(data["preference"])),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_dir),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
        callbacks=[cb],
    )
    trainer.train()
    trainer.save_model()
    cb.finalize()
    pred = _assert_record(out, trainer, cb, {"preference": data["preference"]})
    assert pred["overlap"] == {"train_eval_records": None}  # no train/eval pair declared
    assert pred["datasets"][0]["records"] == 32
    logged = [e["data"]["metrics"] for e in read_ledger(out / "bastion" / "ledger.jsonl") if e["kind"] == "log"]
    assert any(any(k.startswith("rewards/") for k in m) for m in logged)  # DPO's own metrics are recorded
