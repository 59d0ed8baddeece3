"""Helpers shared by the Hugging Face callback tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from bastion.plugins.hf.tiny import tokenize_chat_jsonl


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


chat_dataset = tokenize_chat_jsonl


def read_ledger(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def files_in(out: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``out``, the top-level bastion/ record folder left out
    (checkpoint records nested deeper are signed outputs like any other file)."""
    result = {}
    for root, dirs, files in os.walk(out):
        if Path(root) == out:
            dirs[:] = [d for d in dirs if d != "bastion"]
        for f in files:
            p = Path(root) / f
            result[p.relative_to(out).as_posix()] = sha256(p)
    return result


class StepCounter:
    """A second callback that counts optimizer steps (to prove a strict failure came before the first)."""

    def __init__(self) -> None:
        self.steps = 0

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        self.steps += 1


def make_trainer(
    model_dir: Path,
    out: Path,
    train: Path,
    eval_: Path | None,
    callbacks: list[Any],
    *,
    max_steps: int = 3,
    save_steps: int | None = None,
) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=max_steps,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        logging_steps=1,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        eval_strategy="steps" if eval_ is not None else "no",
        eval_steps=max_steps,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=7,
    )
    train_ds = chat_dataset(tok, train) if train.is_file() else chat_dataset(tok, Path(__file__).parent / "none")
    return Trainer(
        model=model,
        args=args,
        train_dataset=train_ds,
        eval_dataset=None if eval_ is None else chat_dataset(tok, eval_),
        callbacks=callbacks,
    )
