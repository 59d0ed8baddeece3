"""Fixtures for the transformers callback tests: one tiny local model and the demo datasets per session."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bastion.plugins.hf.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny-llama")


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bastion.plugins.hf.tiny import write_demo_datasets

    d = tmp_path_factory.mktemp("data")
    write_demo_datasets(d)
    return d


@pytest.fixture
def data(tmp_path: Path, demo_data_dir: Path) -> dict[str, Path]:
    """A private copy of the demo datasets (tests may edit them)."""
    out = tmp_path / "data"
    shutil.copytree(demo_data_dir, out)
    return {"train": out / "train.jsonl", "eval": out / "eval.jsonl", "preference": out / "preference.jsonl"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_ledger(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def chat_dataset(tokenizer: Any, path: Path, max_length: int = 48) -> Any:
    """Tokenize a chat JSONL with the tokenizer's chat template into a padded causal-LM dataset."""
    from datasets import Dataset

    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=False)
        enc = tokenizer(text, truncation=True, max_length=max_length, padding="max_length")
        enc["labels"] = [t if m else -100 for t, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
        rows.append(dict(enc))
    return Dataset.from_list(rows)
