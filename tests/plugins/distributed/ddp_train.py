"""One rank of a distributed (torchrun, CPU, gloo) transformers Trainer run with BastionCallback.

Launched by test_ddp.py as ``torchrun --nproc_per_node=2 ddp_train.py MODEL_DIR DATA_DIR OUTPUT_DIR REPORT_DIR``
(or through ``accelerate launch``). Every rank trains the same tiny model on the same output dir with
the callback attached, then calls ``trainer.save_model()`` and ``callback.finalize()`` as users do.
Each rank writes ``REPORT_DIR/rank<N>.json`` with what it observed about itself:

- ``hooks``: wall seconds spent inside each callback hook (total, max, calls, return times);
- ``writes``: every file this process opened for writing, appending or creating under OUTPUT_DIR
  (seen through a Python audit hook on ``open``, so nothing in Bastion has to cooperate);
- ``threads``: names of the threads this process started.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

MODEL_DIR, DATA_DIR, OUTPUT_DIR, REPORT_DIR = (Path(a) for a in sys.argv[1:5])
OUTPUT_PREFIX = str(OUTPUT_DIR.resolve())
WRITES: list[str] = []
THREADS: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event != "open" or len(args) < 2:
        return
    path, mode = args[0], args[1]
    if isinstance(path, int) or path is None:
        return
    writing = isinstance(mode, str) and any(c in mode for c in "wax+")
    if not writing and len(args) > 2 and isinstance(args[2], int):
        writing = bool(args[2] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND))
    if not writing:
        return
    full = os.path.abspath(os.fsdecode(path))
    if full.startswith(OUTPUT_PREFIX):
        WRITES.append(os.path.relpath(full, OUTPUT_PREFIX))


sys.addaudithook(_audit)

_thread_start = threading.Thread.start


def _recording_start(self: threading.Thread) -> None:
    THREADS.append(self.name)
    _thread_start(self)


threading.Thread.start = _recording_start  # type: ignore[method-assign]

import datasets  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainingArguments,
)

from bastion.plugins.hf import BastionCallback, DatasetInput  # noqa: E402

SLOW_RANK1_SAVE_S = float(os.environ.get("BASTION_TEST_SLOW_RANK1_SAVE", "0"))


def slow_down_rank1_checkpoint_writes() -> None:
    """Test-only: rank 1 writes its share of each checkpoint late, as a rank writing a large optimizer
    shard to a slow disk does. (Its share under plain DDP is ``rng_state_1.pth``.)"""
    original = Trainer._save_rng_state

    def slow(self: Any, output_dir: str) -> None:
        if self.args.process_index == 1:
            time.sleep(SLOW_RANK1_SAVE_S)
        original(self, output_dir)

    Trainer._save_rng_state = slow


HOOKS = (
    "on_init_end",
    "on_train_begin",
    "on_epoch_begin",
    "on_step_begin",
    "on_pre_optimizer_step",
    "on_optimizer_step",
    "on_substep_end",
    "on_step_end",
    "on_evaluate",
    "on_predict",
    "on_save",
    "on_log",
    "on_prediction_step",
    "on_epoch_end",
    "on_train_end",
)
TIMES: dict[str, dict[str, Any]] = {}


def _timed(name: str, fn: Any) -> Any:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            dt = time.perf_counter() - t0
            rec = TIMES.setdefault(name, {"total": 0.0, "max": 0.0, "calls": 0, "returned_at": []})
            rec["total"] += dt
            rec["max"] = max(rec["max"], dt)
            rec["calls"] += 1
            rec["returned_at"].append(time.time())

    return wrapper


def main() -> None:
    tok = AutoTokenizer.from_pretrained(MODEL_DIR)
    model = AutoModelForCausalLM.from_pretrained(MODEL_DIR)
    train_file = DATA_DIR / "train.jsonl"
    eval_file = DATA_DIR / "eval.jsonl"

    def render(batch: dict[str, Any]) -> dict[str, Any]:
        texts = [tok.apply_chat_template(m, tokenize=False) for m in batch["messages"]]
        return dict(tok(texts, truncation=True, max_length=64))

    train = datasets.load_dataset("json", data_files=str(train_file), split="train")
    train = train.map(render, batched=True, remove_columns=train.column_names)

    args = TrainingArguments(
        output_dir=str(OUTPUT_DIR),
        per_device_train_batch_size=4,
        max_steps=4,
        logging_steps=1,
        save_steps=2,
        use_cpu=True,
        ddp_backend="gloo",
        report_to=[],
        disable_tqdm=True,
        seed=7,
    )
    callback = BastionCallback(
        base_model=MODEL_DIR,
        datasets=[DatasetInput(train_file, role="train"), DatasetInput(eval_file, role="eval")],
        config={"max_steps": 4, "world_size": int(os.environ.get("WORLD_SIZE", "1"))},
        framework="transformers",
    )
    for name in HOOKS:
        if hasattr(callback, name):
            setattr(callback, name, _timed(name, getattr(callback, name)))

    if SLOW_RANK1_SAVE_S > 0:
        slow_down_rank1_checkpoint_writes()
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=DataCollatorForLanguageModeling(tok, mlm=False),
        callbacks=[callback],
    )
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    trainer.save_model()
    t1 = time.perf_counter()
    statement = callback.finalize()
    finalize_s = time.perf_counter() - t1

    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    report = {
        "rank": args.process_index,
        "world_size": args.world_size,
        "is_world_process_zero": trainer.is_world_process_zero(),
        "parallel_mode": str(args.parallel_mode),
        "hooks": TIMES,
        "train_s": train_s,
        "finalize_s": finalize_s,
        "finalize_returned": None if statement is None else str(statement),
        "writes": sorted(set(WRITES)),
        "threads": THREADS,
        "log_history": trainer.state.log_history,
    }
    (REPORT_DIR / f"rank{args.process_index}.json").write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
