"""A real Trainer run that the test kills: prints ``saved <step>`` once Bastion has recorded each checkpoint.

Usage: ``python killed_run_script.py MODEL_DIR TRAIN_JSONL OUT_DIR [crash]``. Trains for many steps with
a checkpoint every step; the parent reads stdout and sends SIGKILL after the second checkpoint. With
``crash`` the training loop raises an exception after the second checkpoint instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from hf_helpers import make_trainer

from bastion.plugins.hf import BastionCallback


class Announce:
    """Says ``saved <step>`` after Bastion's hashing thread has recorded the checkpoint of that step."""

    def __init__(self, cb: BastionCallback) -> None:
        self.cb = cb

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.cb.recorder.wait()  # the checkpoint entry is in the ledger
        print(f"saved {state.global_step}", flush=True)
        if CRASH and state.global_step == 2:
            raise RuntimeError("simulated crash in the training loop")


CRASH = len(sys.argv) > 4 and sys.argv[4] == "crash"


model_dir, train, out = (Path(a) for a in sys.argv[1:4])
cb = BastionCallback(base_model=model_dir, datasets=[train])
trainer = make_trainer(model_dir, out, train, None, [cb, Announce(cb)], max_steps=10_000, save_steps=1)
trainer.train()
