"""Helpers for the LLaMA-Factory tests (a module with its own name: several test folders have a conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "WANDB_DISABLED": "true",
    "WANDB_MODE": "disabled",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "CUDA_VISIBLE_DEVICES": "",  # CPU on every machine, so that LLaMA-Factory never re-launches under torchrun
    "OMP_NUM_THREADS": "2",
}


def base_config(model: Path, data: Path, out: Path, stage: str) -> dict[str, Any]:
    """A small LoRA config in LLaMA-Factory's own keys (as in its examples/train_lora/*.yaml), CPU and fp32."""
    cfg: dict[str, Any] = {
        "model_name_or_path": str(model),
        "trust_remote_code": False,
        "stage": stage,
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 4,
        "lora_target": "all",
        "dataset_dir": str(data),
        "template": "chatml",
        "cutoff_len": 64,
        "max_samples": 16,
        "preprocessing_num_workers": None,
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
        "output_dir": str(out),
        "logging_steps": 1,
        "save_steps": 1000,
        "plot_loss": False,
        "overwrite_output_dir": True,
        "save_only_model": False,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3,
        "max_steps": 4,
        "lr_scheduler_type": "constant",
        "bf16": False,
        "fp16": False,
        "seed": 7,
    }
    if stage == "sft":
        cfg["dataset"] = "tiny_chat"
        cfg["eval_dataset"] = "tiny_chat_eval"
        cfg["per_device_eval_batch_size"] = 4
        cfg["eval_strategy"] = "steps"
        cfg["eval_steps"] = 2
    else:
        cfg["dataset"] = "tiny_pairs"
        cfg["pref_beta"] = 0.1
        cfg["pref_loss"] = "sigmoid"
    return cfg


def write_yaml(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path
