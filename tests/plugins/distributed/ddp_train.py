"""One rank of a distributed (torchrun, CPU, gloo) transformers Trainer run with BastionCallback.

Launched by test_ddp.py as ``torchrun --nproc_per_node=2 ddp_train.py MODEL_DIR DATA_DIR OUTPUT_DIR REPORT_DIR``
(or through ``accelerate launch``). Every rank trains the same tiny model on the same output dir with
the callback attached, then calls ``trainer.save_model()`` and ``callback.finalize()`` as users do.
Each rank writes ``REPORT_DIR/rank<N>.json`` with what it observed about itself:

- ``hooks``: each callback hook's calls and return times (durations are informative, never asserted);
- ``writes``: every file this process opened for writing, appending or creating under OUTPUT_DIR
  (seen through a Python audit hook on ``open``, so nothing in Bastion has to cooperate);
- ``threads``: names of the threads this process started.
"""

from __future__ import annotations

import faulthandler
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

# A rank that hangs can be asked where it is: SIGUSR1 prints every thread's stack to stderr.
faulthandler.register(signal.SIGUSR1, all_threads=True)

MODEL_DIR, DATA_DIR, OUTPUT_DIR, REPORT_DIR = (Path(a) for a in sys.argv[1:5])
REPORT_DIR.mkdir(parents=True, exist_ok=True)
(REPORT_DIR / f"pid{os.environ.get('RANK', '0')}").write_text(str(os.getpid()))  # whom the test asks for stacks
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

RANK1_SAVES_LATE = os.environ.get("BASTION_TEST_RANK1_SAVES_LATE") == "1"


def on_save_marker(output_dir: str | Path) -> Path:
    """The file rank 0 creates once its ``on_save`` hook has returned for a checkpoint."""
    return REPORT_DIR / f"on_save-returned-{Path(output_dir).name}"


def rank1_writes_after_rank0_on_save() -> None:
    """Test-only: rank 1 writes its share of each checkpoint (``rng_state_1.pth`` under plain DDP) only
    after rank 0's ``on_save`` hook has returned, as a rank writing a big shard to a slow disk might.
    Ordered by an event, not a sleep: were on_save to wait for the other ranks' files, the job would
    hang here and the test fail on its timeout."""
    original = Trainer._save_rng_state

    def late(self: Any, output_dir: str) -> None:
        if self.args.process_index == 1:
            marker = on_save_marker(output_dir)
            deadline = time.monotonic() + 180
            while not marker.exists():
                if time.monotonic() > deadline:
                    raise SystemExit(f"rank 1: rank 0's on_save for {Path(output_dir).name} never returned")
                time.sleep(0.01)
        original(self, output_dir)

    Trainer._save_rng_state = late


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
    if RANK1_SAVES_LATE:
        timed_on_save = callback.on_save

        def on_save(args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            result = timed_on_save(args, state, control, **kwargs)
            if args.process_index == 0:
                REPORT_DIR.mkdir(parents=True, exist_ok=True)
                on_save_marker(Path(args.output_dir) / f"checkpoint-{state.global_step}").touch()
            return result

        callback.on_save = on_save  # type: ignore[method-assign]
        rank1_writes_after_rank0_on_save()
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
    # As PyTorch asks of every distributed script: without it, gloo's worker threads can still hold work
    # when the interpreter is torn down, and the rank then dies with SIGABRT ("terminate called without an
    # active exception", pytorch/pytorch#190489) after everything above has finished (seen once in a .ci/run).
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    # Then leave without tearing anything down. The DDP model's reducer still holds the gloo process group;
    # freeing it (when main() returns) runs ~ProcessGroupGloo, which joins gloo's worker threads while this
    # thread holds the GIL. A worker that is still destroying a finished all-gather (the Trainer gathers
    # FLOP counts and token counts) needs the GIL to drop its tensors, and the rank hangs for good
    # (pytorch/pytorch#56297; seen under gdb in about 1 in 8 launches on a 2-core machine, and as a CI
    # timeout). Everything this test checks is on disk by now; nothing of Bastion's runs at exit
    # (finalize() was called, so its exit hook has nothing to do).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
