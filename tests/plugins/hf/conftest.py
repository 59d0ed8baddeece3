"""Fixtures for the transformers callback tests: one tiny local model and the demo datasets per session."""

from __future__ import annotations

import shutil
from pathlib import Path

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
