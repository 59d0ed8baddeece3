"""Fixtures for the LLaMA-Factory tests: a tiny local model, LLaMA-Factory-style data, and the launcher.

These tests run in the LLaMA-Factory venv (tools/envs/llamafactory.sh), marked ``framework``:
    .venvs/llamafactory/bin/python -m pytest -m framework tests/plugins/llamafactory
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lf_support import OFFLINE_ENV


@pytest.fixture(autouse=True)
def _llamafactory_venv(request: pytest.FixtureRequest) -> None:
    """Fail (not skip) when run outside the LLaMA-Factory venv: a skipped framework job must not look green."""
    if request.node.get_closest_marker("framework") and importlib.util.find_spec("llamafactory") is None:
        pytest.fail(f"llamafactory is not installed in {sys.prefix}; create the venv with tools/envs/llamafactory.sh")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from bastion.plugins.hf.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("lf-model") / "tiny-llama")


def _write_json(path: Path, value: Any) -> Path:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def lf_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LLaMA-Factory ``dataset_dir``: chat train/eval JSONL (sharegpt with OpenAI-style tags), and the
    preference pairs as a folder of two JSON-array files (sharegpt ranking format)."""
    from bastion.plugins.hf.tiny import write_demo_datasets

    d = tmp_path_factory.mktemp("lf-data")
    demo = write_demo_datasets(d / "demo")
    (d / "chat").mkdir()
    (demo["train"]).rename(d / "chat" / "train.jsonl")
    (demo["eval"]).rename(d / "chat" / "eval.jsonl")
    pairs = []
    for line in demo["preference"].read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        pairs.append({"messages": rec["prompt"], "chosen": rec["chosen"][0], "rejected": rec["rejected"][0]})
    (d / "pairs").mkdir()
    _write_json(d / "pairs" / "part-0.json", pairs[:16])
    _write_json(d / "pairs" / "part-1.json", pairs[16:])
    tags = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
    chat = {"formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": tags}
    _write_json(
        d / "dataset_info.json",
        {
            "tiny_chat": {"file_name": "chat/train.jsonl", **chat},
            "tiny_chat_eval": {"file_name": "chat/eval.jsonl", **chat},
            "tiny_pairs": {
                "file_name": "pairs",
                "formatting": "sharegpt",
                "ranking": True,
                "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"},
                "tags": tags,
            },
            "hub_only": {"hf_hub_url": "example-org/not-downloaded"},
        },
    )
    return d


@dataclass
class Launch:
    returncode: int
    stdout: str
    stderr: str


def _bastion_exe() -> str:
    exe = Path(sys.executable).parent / "bastion"
    if not exe.exists():
        pytest.fail(f"{exe} is missing: install bastion into this venv (tools/envs/llamafactory.sh)")
    return str(exe)


@pytest.fixture
def launch(tmp_path: Path) -> Callable[..., Launch]:
    """Run ``bastion llamafactory train ARGS`` the way the README tells users to, in a subprocess."""

    def run(*args: str, timeout: float = 240, cwd: Path | None = None, env: dict[str, str] | None = None) -> Launch:
        env = {**os.environ, **OFFLINE_ENV, **(env or {})}
        proc = subprocess.run(
            [_bastion_exe(), "llamafactory", "train", *args],
            cwd=cwd or tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Launch(proc.returncode, proc.stdout, proc.stderr)

    return run
