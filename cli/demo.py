"""``bastion demo``: a complete provenance run on CPU in well under a minute, nothing downloaded.

It builds a tiny Llama-style model and tokenizer locally, writes small synthetic chat datasets,
runs a short LoRA fine-tune with :class:`bastion.plugins.hf.BastionCallback`, saves the adapter,
writes the run record and (by default) signs it with a freshly generated demo key, then verifies the
result with the same verifier a deploy pipeline uses. Layout under ``--output-dir``::

    inputs/tiny-llama/  tiny base model + tokenizer
    inputs/data/        train / eval / preference JSONL
    keys/               demo signing key pair (demo only; never use it for real artifacts)
    run/                adapter, checkpoints, and the bastion/ run record
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import click

from bastion.errors import InputError
from bastion.extras import require

OWNED = ("inputs", "keys", "run")
"""Sub-folders the demo creates (and, with --force, replaces) inside --output-dir."""


def _offline() -> None:
    # The demo never talks to a hub or a tracker; make that explicit for every library it loads.
    for key, value in {
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_DISABLED": "true",
        "WANDB_MODE": "disabled",
        "DO_NOT_TRACK": "1",
    }.items():
        os.environ.setdefault(key, value)


def _signing_available() -> bool:
    try:
        import bastion.provenance.signing  # noqa: F401
    except ImportError:
        return False
    return True


def _prepare(output_dir: Path, force: bool) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError("--output-dir exists and is not a directory", path=output_dir)
    existing = [output_dir / name for name in OWNED if (output_dir / name).exists()]
    if existing and not force:
        raise InputError(
            "already holds a demo run",
            path=output_dir,
            hint="pass another --output-dir, or --force to replace its inputs/, keys/ and run/ folders",
        )
    try:
        for path in existing:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = output_dir / ".bastion-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(
            f"cannot write to --output-dir: {exc.strerror or exc}", path=output_dir, hint="pick a writable folder"
        ) from None


def _short(hexdigest: str | None) -> str:
    return "-" if not hexdigest else f"{hexdigest[:16]}…"


@click.command("demo")
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("bastion-demo"),
    show_default=True,
    help="Where the inputs, the trained adapter and its run record go.",
)
@click.option("--steps", type=click.IntRange(1, 500), default=8, show_default=True, help="Optimizer steps to train.")
@click.option(
    "--sign/--no-sign",
    default=None,
    help="Sign the run with a freshly generated demo key and verify it (default: on when signing is installed).",
)
@click.option("--force", is_flag=True, help="Replace an earlier demo run in --output-dir.")
def demo(output_dir: Path, steps: int, sign: bool | None, force: bool) -> None:
    """Run a tiny LoRA fine-tune on CPU with provenance, on embedded defaults."""
    require("hf", feature="bastion demo")  # before anything is written
    _offline()
    warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notes are noise here
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    started = time.monotonic()
    if sign is None:
        sign = _signing_available()
    elif sign and not _signing_available():
        raise click.UsageError("--sign needs bastion.provenance.signing, which is not installed")

    output_dir = output_dir.absolute()
    _prepare(output_dir, force)
    inputs, run_dir = output_dir / "inputs", output_dir / "run"

    with console.status("Building the tiny model, tokenizer and datasets locally…"):
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments
        from transformers import logging as hf_logging
        from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

        from bastion.plugins.hf import BastionCallback, DatasetInput
        from bastion.plugins.hf.tiny import build_tiny_model, tokenize_chat_jsonl, write_demo_datasets

        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        torch.manual_seed(0)
        model_dir = build_tiny_model(inputs / "tiny-llama")
        data = write_demo_datasets(inputs / "data")

    signing: dict[str, Any] | None = None
    public_key: Path | None = None
    if sign:
        from bastion.provenance.signing import generate_key_pair

        pair = generate_key_pair(output_dir / "keys")
        signing, public_key = {"backend": "key", "private_key": str(pair.private_key)}, pair.public_key

    config = {
        "demo": True,
        "base_model": "inputs/tiny-llama",
        "method": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "max_steps": steps,
        "per_device_train_batch_size": 8,
        "learning_rate": 2e-3,
        "max_length": 48,
    }
    callback = BastionCallback(
        base_model=model_dir,
        datasets=[DatasetInput(data["train"], "train"), DatasetInput(data["eval"], "eval")],
        config=config,
        framework="transformers",
        signing=signing,
        sign_checkpoints=False,
    )

    class _Steps(TrainerCallback):  # type: ignore[misc]
        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any) -> None:
            if logs and "loss" in logs:
                console.print(f"  step {state.global_step:>3}/{state.max_steps}  loss {float(logs['loss']):.4f}")

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    lora = config["lora"]
    assert isinstance(lora, dict)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(
            r=lora["r"],
            lora_alpha=lora["alpha"],
            lora_dropout=lora["dropout"],
            target_modules=lora["target_modules"],
            task_type="CAUSAL_LM",
        ),
    )
    args = TrainingArguments(
        output_dir=str(run_dir),
        max_steps=steps,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=8,
        learning_rate=2e-3,
        logging_steps=1,
        save_strategy="steps" if steps >= 2 else "no",
        save_steps=max(1, steps // 2),
        eval_strategy="steps",
        eval_steps=steps,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=tokenize_chat_jsonl(tokenizer, data["train"]),
        eval_dataset=tokenize_chat_jsonl(tokenizer, data["eval"]),
        callbacks=[callback, _Steps()],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    console.print(f"[bold]Training[/bold] a LoRA adapter for {steps} step(s) on CPU…")
    trainer.train()
    trainer.save_model()
    statement_path = callback.finalize()
    assert statement_path is not None
    _summary(console, Table, output_dir, run_dir, statement_path, public_key, time.monotonic() - started)


def _summary(
    console: Any,
    table_cls: Any,
    output_dir: Path,
    run_dir: Path,
    statement_path: Path,
    public_key: Path | None,
    elapsed: float,
) -> None:
    from bastion.provenance.statement import load_statement

    statement = load_statement(statement_path)
    pred = statement["predicate"]
    record = statement_path.parent

    def rel(p: Path) -> str:
        try:
            return p.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return str(p)

    console.print()
    console.print(f"[bold green]Run record written[/bold green] to {rel(record)}/  (run {pred['run_id']})")

    inputs = table_cls(title="Inputs", title_justify="left")
    for col in ("input", "role", "sha256", "records"):
        inputs.add_column(col)
    base = pred.get("base_model") or {}
    if base:
        inputs.add_row(
            base["path_name"], "base model + tokenizer", _short(base["digest"]["sha256"]), f"{len(base['files'])} files"
        )
    for ds in pred.get("datasets", []):
        inputs.add_row(ds["name"], ds["role"], _short(ds["digest"]["sha256"]), str(ds.get("records", "-")))
    console.print(inputs)
    overlap = pred.get("overlap", {}).get("train_eval_records")
    console.print(f"train/eval overlap: {overlap} record(s)")
    metrics = pred.get("metrics", {})
    final = metrics.get("final", {})
    loss = final.get("train_loss", final.get("loss"))
    console.print(
        f"steps trained: {metrics.get('global_step')}, log entries: {metrics.get('log_entries')}"
        + (f", final train loss: {loss:.4f}" if isinstance(loss, (int, float)) else "")
    )
    ledger = pred["ledger"]
    console.print(f"ledger: {ledger['path']}  entries {ledger['entries']}  head {_short(ledger['head'])}")

    subjects = table_cls(title=f"Statement subjects ({len(statement['subject'])} files)", title_justify="left")
    subjects.add_column("file")
    subjects.add_column("sha256")
    for s in statement["subject"]:
        subjects.add_row(s["name"], _short(s["digest"]["sha256"]))
    console.print(subjects)

    ok = True
    if public_key is not None:
        signed = sorted(p.name for p in record.iterdir() if p.name.endswith((".sigstore.json", ".sig")))
        console.print(f"signed with a demo key ({rel(public_key)}): {', '.join(signed)}")
        try:
            from bastion.provenance.verify import verify
        except ImportError:
            console.print("[yellow]verifier not installed; skipping verification[/yellow]")
        else:
            report = verify(run_dir, public_key=public_key)
            ok = report.ok
            if ok:
                console.print(f"[bold green]verified[/bold green]: {', '.join(report.passed)}")
            else:
                console.print("[bold red]verification FAILED[/bold red]")
                for line in report.lines():
                    console.print(f"  {line}")
        console.print(f"verify it yourself: bastion verify {rel(run_dir)} --key {rel(public_key)}")
    else:
        console.print(
            f"unsigned (signing off); to sign: bastion keygen --out keys && bastion sign {rel(run_dir)} "
            "--key keys/signing.pem"
        )
    console.print(f"done in {elapsed:.1f} s; inputs under {rel(output_dir / 'inputs')}/")
    if not ok:
        raise SystemExit(1)
