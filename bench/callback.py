"""Per-step overhead of BastionCallback on a real transformers Trainer run (tiny local model, LoRA, CPU).

    python bench/callback.py            # updates docs/benchmarks.md
    python bench/callback.py --steps 80 --no-doc

Worst case for the callback: ``logging_steps=1``, so every optimizer step produces a ledger entry.
Two measurements:

1. Step time end to end: the interval between consecutive ``on_step_begin`` events (forward, backward,
   optimizer step, logging, every callback), median over the steps after a warm-up, in runs without
   and with BastionCallback, alternated (without, with, ...) after one discarded warm-up run.
2. The callback's own time per step: its ``on_log`` (the only per-step hook it implements; the
   ledger append happens there) timed directly around the call, median in µs.
3. Ledger.append alone for the same kind of entry, against a reference writer doing what
   Ledger.append did before the fast canonical encoder (``rfc8785.dumps`` of the entry without its
   hash, then of the whole entry, write, flush), alternated in one process: the before/after.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, info_block, load_average, update_doc

WARMUP_STEPS = 5


class StepClock:
    """Records the time at every on_step_begin (a minimal TrainerCallback)."""

    def __init__(self) -> None:
        self.stamps: list[float] = []
        self.cpu: list[float] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("on_"):
            return lambda *a, **k: None
        raise AttributeError(name)

    def on_step_begin(self, *args: Any, **kwargs: Any) -> None:
        self.stamps.append(time.perf_counter())
        self.cpu.append(time.process_time())

    @staticmethod
    def _deltas(xs: list[float]) -> list[float]:
        return [b - a for a, b in itertools.pairwise(xs)][WARMUP_STEPS:]

    def step_times(self) -> list[float]:
        return self._deltas(self.stamps)

    def step_cpu(self) -> list[float]:
        """Process CPU time per step (all threads): less sensitive to other processes than wall time."""
        return self._deltas(self.cpu)


def _log_data(i: int) -> dict[str, Any]:
    """What on_log records for a Trainer log: step, epoch and the float metrics."""
    return {
        "epoch": i / 37,
        "metrics": {
            "epoch": i / 37,
            "grad_norm": 1.2345678 + i / 7,
            "learning_rate": 4.9e-05 * (1 - i / 1e4),
            "loss": 2.3456 - i * 1e-4,
        },
        "step": i,
    }


def append_before_after(work: Path, n: int = 3000, rounds: int = 3) -> tuple[list[float], list[float]]:
    """Per-entry seconds of Ledger.append and of the previous algorithm (rfc8785 twice), alternated."""
    import hashlib
    import threading

    import rfc8785

    from bastion.provenance.ledger import GENESIS, Ledger, utc_now

    now_t: list[float] = []
    ref_t: list[float] = []
    for r in range(rounds):
        path = work / f"append-{r}.jsonl"
        path.unlink(missing_ok=True)
        with Ledger(path, fsync="interval") as led:
            for i in range(n):
                data = _log_data(i)
                t0 = time.perf_counter()
                led.append("log", data)
                now_t.append(time.perf_counter() - t0)
        ref = work / f"append-ref-{r}.jsonl"
        lock, prev = threading.Lock(), GENESIS
        with open(ref, "wb") as fh:
            for i in range(n):
                data = _log_data(i)
                t0 = time.perf_counter()
                with lock:
                    entry: dict[str, Any] = {"seq": i, "time": utc_now(), "kind": "log", "data": data, "prev": prev}
                    entry["hash"] = hashlib.sha256(rfc8785.dumps(entry)).hexdigest()
                    fh.write(rfc8785.dumps(entry) + b"\n")
                    fh.flush()
                    prev = entry["hash"]
                ref_t.append(time.perf_counter() - t0)
    return now_t, ref_t


def one_run(model_dir: Path, data: dict[str, Path], out: Path, steps: int, with_callback: bool) -> dict[str, Any]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from bastion.plugins.hf import BastionCallback, DatasetInput
    from bastion.plugins.hf.tiny import tokenize_chat_jsonl

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=steps,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=7,
    )
    clock = StepClock()
    callbacks: list[Any] = [clock]
    hook_times: list[float] = []
    hook_cpu: list[float] = []
    cb = None
    if with_callback:
        cb = BastionCallback(
            base_model=model_dir,
            datasets=[DatasetInput(data["train"], role="train"), DatasetInput(data["eval"], role="eval")],
            config={"learning_rate": 5e-5, "max_steps": steps},
            framework="transformers",
        )
        inner = cb.on_log

        def timed_on_log(*a: Any, **k: Any) -> Any:
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return inner(*a, **k)
            finally:
                hook_times.append(time.perf_counter() - t0)
                hook_cpu.append(time.thread_time() - c0)

        cb.on_log = timed_on_log  # type: ignore[method-assign]
        callbacks.append(cb)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=tokenize_chat_jsonl(tok, data["train"], max_length=64),
        callbacks=callbacks,
    )
    trainer.remove_callback(PrinterCallback)  # no per-step prints: they would be timed too
    from bastion.provenance.ledger import Ledger

    drains: list[tuple[float, int]] = []  # the ledger writer's batches: (CPU seconds, entries)
    real_drain = Ledger._drain

    def timed_drain(self: Ledger) -> None:
        n, t0 = len(self._pending), time.thread_time()  # CPU of the thread that writes (no GIL waits)
        try:
            real_drain(self)
        finally:
            if n:
                drains.append((time.thread_time() - t0, n))

    Ledger._drain = timed_drain  # type: ignore[method-assign]
    try:
        trainer.train()
    finally:
        Ledger._drain = real_drain  # type: ignore[method-assign]
    if cb is not None:
        trainer.save_model()
        cb.finalize()
    return {
        "drain_s": [sum(d for d, _ in drains)],
        "drain_n": [float(sum(n for _, n in drains))],
        "steps": clock.step_times(),
        "cpu": clock.step_cpu(),
        "hook": hook_times[WARMUP_STEPS:],
        "hook_cpu": hook_cpu[WARMUP_STEPS:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60, help="optimizer steps per run (default 60)")
    ap.add_argument("--runs", type=int, default=3, help="runs with and without the callback, alternated (default 3)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: with more, OpenMP spin-waiting on a shared machine inflates CPU time)",
    )
    ap.add_argument("--no-doc", action="store_true", help="print results only")
    args = ap.parse_args()

    import logging

    import torch
    from transformers.utils import logging as hf_logging

    from bastion.plugins.hf.tiny import build_tiny_model, write_demo_datasets

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    logging.getLogger("bastion").setLevel(logging.ERROR)
    work = DATA / "callback"
    model_dir = work / "tiny-llama"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir)
    data = write_demo_datasets(work / "data")

    load_before = load_average()
    one_run(model_dir, data, work / "warmup", args.steps, with_callback=True)  # discarded: imports, caches
    keys = ("steps", "cpu", "hook", "hook_cpu", "drain_s", "drain_n")
    results: dict[bool, dict[str, list[float]]] = {b: {k: [] for k in keys} for b in (False, True)}
    run_medians: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for i, with_cb in enumerate([False, True] * args.runs):
        r = one_run(model_dir, data, work / f"run-{i}", args.steps, with_callback=with_cb)
        for k in keys:
            results[with_cb][k] += r[k]
        run_medians[with_cb].append((statistics.median(r["steps"]), statistics.median(r["cpu"])))
    now_t, ref_t = append_before_after(work)
    load_after = load_average()

    def us(x: float) -> str:
        return f"{x * 1e6:,.0f}"

    med = statistics.median
    base, withcb = med(results[False]["steps"]), med(results[True]["steps"])
    base_cpu, withcb_cpu = med(results[False]["cpu"]), med(results[True]["cpu"])
    hook, hook_cpu = results[True]["hook"], results[True]["hook_cpu"]
    hook_med = med(hook)
    from bastion.provenance.ledger import Ledger

    writer_n = sum(results[True]["drain_n"])
    writer_us = sum(results[True]["drain_s"]) / max(writer_n, 1) * 1e6
    hook_p90 = statistics.quantiles(hook, n=10)[-1]
    hook_cpu_p90 = statistics.quantiles(hook_cpu, n=10)[-1]
    n = len(results[False]["steps"])

    def runs(b: bool) -> str:
        return ", ".join(f"{us(w)} ({us(c)} CPU)" for w, c in run_medians[b])

    table = "\n".join(
        [
            "| measurement | median µs per step (wall) | median CPU µs per step | note |",
            "|---|---:|---:|---|",
            f"| step without BastionCallback | {us(base)} | {us(base_cpu)} "
            f"| {n} steps, {args.runs} runs; run medians {runs(False)} |",
            f"| step with BastionCallback | {us(withcb)} | {us(withcb_cpu)} "
            f"| {args.runs} runs; run medians {runs(True)}; "
            f"difference {(withcb - base) / base * 100:+.1f} % wall, "
            f"{(withcb_cpu - base_cpu) / base_cpu * 100:+.1f} % CPU |",
            f"| **BastionCallback.on_log itself** (one ledger entry submitted) | **{us(hook_med)}** "
            f"| {us(med(hook_cpu))} | "
            f"**{hook_med / base * 100:.2f} % of the median step** (wall); p90 {us(hook_p90)} µs wall, "
            f"{us(hook_cpu_p90)} µs CPU |",
            f"| ledger writer thread, per log entry (batches every {Ledger.SUBMIT_WRITE_INTERVAL} s, off the "
            f"training thread) | - | {writer_us:.0f} | mean over {writer_n:.0f} entries in "
            f"{args.runs} runs; holds the GIL while it writes; on_log + writer: {hook_med * 1e6 + writer_us:.0f} µs "
            f"= {(hook_med + writer_us / 1e6) / base * 100:.2f} % of the median step |",
        ]
    )
    append_table = "\n".join(
        [
            "| Ledger.append, one log entry (step, epoch, 4 float metrics) | median µs | p90 µs |",
            "|---|---:|---:|",
            f"| before: rfc8785.dumps of the entry twice, write, flush (reference writer) | {med(ref_t) * 1e6:.1f} "
            f"| {statistics.quantiles(ref_t, n=10)[-1] * 1e6:.1f} |",
            f"| now: Ledger.append (fast canonical encoder, one serialization), write, flush | {med(now_t) * 1e6:.1f} "
            f"| {statistics.quantiles(now_t, n=10)[-1] * 1e6:.1f} |",
        ]
    )
    body = (
        f"Command: `python bench/callback.py` ({args.steps} steps per run). Tiny local Llama-style model "
        "(`bastion.plugins.hf.tiny.build_tiny_model`), LoRA r=4 on q/v, batch 4 x 64 tokens, CPU, "
        "`logging_steps=1` (a ledger entry every step: the callback's worst case), fsync policy 'interval'. "
        f"First {WARMUP_STEPS} steps of each run dropped.\n\n"
        + info_block(
            {
                "torch threads": str(torch.get_num_threads()),
                "load average (1/5/15 min) before / after": f"{load_before} → {load_after}",
            }
        )
        + "\n\n"
        + table
        + "\n\n"
        + append_table
        + f"\n\n{len(now_t)} appends each, alternated in {len(now_t) // 3000} rounds, same process, same entries. "
        "Before (commit 5c5e95e, this bench at load average 8.9 on the 2 cores): on_log appended synchronously with "
        "rfc8785 and took a median of 237 µs = 0.69 % of a 35 ms step, above the 0.5 % goal. Now: a fast RFC 8785 "
        "encoder (byte-identical output, property-tested against rfc8785 in tests/provenance), one serialization "
        "per entry, and on_log only submits the entry (Ledger.submit); the ledger's writer thread writes the "
        "submitted entries in order every 0.25 s, with warm caches (right after a training step every Python call "
        "costs several times its warm cost, which is why on_log's own ledger append cost ~80 µs there). "
        "Durability: every other entry (run.start, inputs, checkpoints, train.end, outputs) is still written before "
        "append() returns, and each append first writes the submitted log entries; a killed process can lose the "
        "log entries of its last 0.25 s, a machine crash what fsync 'interval' has not synced (5 s). "
        "strict=True and fsync='always' keep log entries synchronous."
        + "\n\nThe direct measurement of on_log is the reliable number; the end-to-end difference between runs "
        "is within the run-to-run spread (compare the run medians) when other processes share the two cores. "
        "Hashing of inputs and outputs runs on a background thread at train begin and in finalize(), not per step."
    )
    print(body)
    if not args.no_doc:
        update_doc("Training callback overhead per step (BastionCallback, tiny model)", body)


if __name__ == "__main__":
    main()
