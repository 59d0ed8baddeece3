"""Fixtures for the Axolotl plugin tests.

The ``framework`` tests run Axolotl's real CLI in a subprocess, in the Axolotl virtual environment
(``.venvs/axolotl``, made by ``tools/envs/axolotl.sh``), on a tiny model built locally: nothing is
downloaded, the hub is switched to offline mode.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# Exactly what the README tells users to add to their Axolotl config.
PLUGIN_LINES = "plugins:\n  - bastion.plugins.axolotl.BastionPlugin\n"

# A tiny LoRA run that Axolotl can do on a CPU: fp32, no fused LoRA kernels (they are CUDA-only),
# no flash attention, no sample packing.
BASE_CONFIG = """\
base_model: ./model
tokenizer_type: AutoTokenizer
chat_template: tokenizer_default
datasets:
  - path: ./data/train.jsonl
    type: chat_template
    field_messages: messages
test_datasets:
  - path: ./data/eval.jsonl
    type: chat_template
    field_messages: messages
    split: train
dataset_prepared_path: ./prepared
val_set_size: 0
output_dir: ./out
adapter: lora
lora_r: 4
lora_alpha: 8
lora_dropout: 0.0
lora_target_linear: true
lora_mlp_kernel: false
lora_qkv_kernel: false
lora_o_kernel: false
sequence_len: 128
micro_batch_size: 4
gradient_accumulation_steps: 1
max_steps: 4
num_epochs: 1
learning_rate: 0.001
optimizer: adamw_torch
lr_scheduler: constant
logging_steps: 1
save_steps: 2
eval_strategy: "no"
bf16: false
fp16: false
tf32: false
flash_attention: false
sample_packing: false
gradient_checkpointing: false
dataloader_num_workers: 0
dataset_num_proc: 1
seed: 42
"""


def axolotl_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    # `axolotl train` starts `accelerate launch` from PATH, as in an activated virtual environment.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HOME": str(home / "hf-home"),
            "AXOLOTL_DO_NOT_TRACK": "1",
            "DO_NOT_TRACK": "1",
            "WANDB_MODE": "disabled",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": "2",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="session")
def axolotl_importable() -> None:
    """Fail (not skip) when Axolotl cannot be imported: a framework job whose venv is missing or broken
    must not go green with every test skipped (the LLaMA-Factory job fails the same way)."""
    try:
        import axolotl  # noqa: F401
    except Exception as exc:  # ImportError, or a broken stack failing inside axolotl's own imports
        pytest.fail(
            f"axolotl cannot be imported in {sys.prefix} ({type(exc).__name__}: {exc}); "
            "create the venv with tools/envs/axolotl.sh and run .venvs/axolotl/bin/python -m pytest -m framework",
            pytrace=False,
        )


@pytest.fixture(autouse=True)
def _axolotl_venv(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("framework") is not None:
        request.getfixturevalue("axolotl_importable")


@pytest.fixture(scope="session")
def axolotl_cli(axolotl_importable: None) -> Path:
    """The ``axolotl`` console script of the running (Axolotl) virtual environment."""
    cli = Path(sys.executable).parent / "axolotl"
    assert cli.is_file(), f"axolotl console script not found next to {sys.executable}"
    return cli


@pytest.fixture(scope="session")
def make_project(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A folder with ``model/`` (tiny Llama + tokenizer) and ``data/`` (demo chat JSONL), built locally."""
    from bastion.plugins.hf.tiny import build_tiny_model, write_demo_datasets

    template = tmp_path_factory.mktemp("axolotl-template")
    build_tiny_model(template / "model")
    write_demo_datasets(template / "data")

    def make(name: str) -> Path:
        import shutil

        root = tmp_path_factory.mktemp(name)
        shutil.copytree(template / "model", root / "model")
        shutil.copytree(template / "data", root / "data")
        return root

    return make


@pytest.fixture(scope="session")
def run_axolotl(axolotl_cli: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``axolotl <command> ...`` (Axolotl's console script) in a project folder, offline."""

    def run(project: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(axolotl_cli), *args],
            cwd=project,
            env=axolotl_env(project),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    return run


@pytest.fixture(scope="session")
def base_config() -> str:
    """The tiny CPU training config, without the plugin lines."""
    return BASE_CONFIG


@pytest.fixture(scope="session")
def plugin_lines() -> str:
    """The lines the README tells users to add to enable the plugin."""
    return PLUGIN_LINES
