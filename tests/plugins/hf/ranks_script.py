"""One rank of a 2-process gloo job (torchrun) that drives BastionCallback's hooks as the Trainer does.

Scenario "all": both ranks attach the callback; rank 1 writes its share of each checkpoint only after
rank 0's ``on_save`` has returned (so a hook that waited for the other ranks would hang the job).
Scenario "rank0": only rank 0 attaches it (a common pattern for loggers); nothing may hang.
Rank 0 writes a JSON report of the hooks it ran.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from transformers import TrainerControl, TrainerState

from bastion.plugins.hf import BastionCallback

root = Path(sys.argv[1])
dist.init_process_group("gloo")
rank = dist.get_rank()


def wait_for(marker: Path, limit_s: float = 180.0) -> None:
    """Block until ``marker`` exists (an event from the other rank); fail loudly if it never comes."""
    deadline = time.monotonic() + limit_s
    while not marker.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"rank {rank}: {marker.name} never appeared; rank 0's on_save did not return")
        time.sleep(0.01)


def run(scenario: str) -> None:
    out = root / scenario
    args = SimpleNamespace(output_dir=str(out), process_index=rank)
    state = TrainerState(is_world_process_zero=rank == 0, is_local_process_zero=rank == 0)
    control = TrainerControl()
    cb = BastionCallback() if scenario == "all" or rank == 0 else None
    hooks: dict[str, float] = {}

    def hook(name: str) -> None:
        if cb is None:
            return
        t = time.monotonic()
        getattr(cb, name)(args, state, control)
        hooks[name] = max(hooks.get(name, 0.0), time.monotonic() - t)

    hook("on_train_begin")
    for step in (1, 2):
        state.global_step = step
        dist.all_reduce(torch.ones(1))  # the training step's collective
        ckpt = out / f"checkpoint-{step}"
        ckpt.mkdir(parents=True, exist_ok=True)
        if rank == 0:
            (ckpt / "adapter_model.safetensors").write_bytes(os.urandom(1024))
        saved = root / f"{scenario}-rank0-on_save-{step}-returned"
        if rank == 1:
            # A slow disk, made deterministic: rank 1 writes its share only after rank 0's on_save has
            # returned. Were on_save to wait for rank 1's files, the job would hang here (and the test
            # fail on its timeout) instead of passing on a lucky schedule.
            wait_for(saved)
        (ckpt / f"rng_state_{rank}.pth").write_bytes(os.urandom(64))
        hook("on_save")
        if rank == 0:
            saved.touch()
    hook("on_train_end")
    dist.barrier()
    if rank == 0:
        assert cb is not None
        (out / "adapter_model.safetensors").write_bytes(b"final")
        t = time.monotonic()
        cb.finalize()
        hooks["finalize"] = time.monotonic() - t
        (root / f"{scenario}-report.json").write_text(json.dumps(hooks), encoding="utf-8")


run("all")
run("rank0")
dist.destroy_process_group()
