"""A real Axolotl LoRA run on CPU through Axolotl's CLI, with the Bastion plugin enabled from the YAML.

One training run (4 steps) and one ``axolotl merge-lora`` are shared by the tests of this module;
the training record is checked (and verified) before the merge changes the output directory.
Run in the Axolotl venv: ``.venvs/axolotl/bin/python -m pytest -m framework tests/plugins/axolotl``.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.framework


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_ledger(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def files_in(root: Path) -> dict[str, str]:
    """Digests of every file under ``root`` except its top-level run-record folder, computed here
    independently (nested records, e.g. ``merged/bastion/``, are signed content like any other file)."""
    out = {}
    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root)
        if f.is_file() and rel.parts[0] != "bastion":
            out[rel.as_posix()] = sha256(f)
    return out


@dataclass
class Run:
    project: Path
    proc: subprocess.CompletedProcess[str]
    statement: dict[str, Any]
    ledger: list[dict[str, Any]]
    files: dict[str, str]
    report: Any  # VerificationReport right after training


@pytest.fixture(scope="module")
def trained(
    make_project: Callable[[str], Path],
    run_axolotl: Callable[..., subprocess.CompletedProcess[str]],
    base_config: str,
    plugin_lines: str,
) -> Run:
    project = make_project("axolotl-train")
    config = plugin_lines + base_config
    from bastion.provenance.signing import generate_key_pair

    generate_key_pair(project / "keys")
    config += "bastion_signing:\n  backend: key\n  private_key: keys/signing.pem\nbastion_sign_checkpoints: true\n"
    (project / "axolotl.yml").write_text(config, encoding="utf-8")
    # Exactly the user's command: the default launcher (`accelerate launch`) runs the training process.
    proc = run_axolotl(project, "train", "axolotl.yml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    out = project / "out"
    from bastion.provenance.verify import verify

    report = verify(out, public_key=project / "keys" / "signing.pub")
    return Run(
        project=project,
        proc=proc,
        statement=json.loads((out / "bastion" / "statement.json").read_text(encoding="utf-8")),
        ledger=read_ledger(out / "bastion" / "ledger.jsonl"),
        files=files_in(out),
        report=report,
    )


def test_run_finishes_and_reports_the_record(trained: Run) -> None:
    assert "bastion: run record written to out/bastion" in trained.proc.stderr
    pred = trained.statement["predicate"]
    assert pred["framework"] == "axolotl"
    assert pred["warnings"] == []
    kinds = [e["kind"] for e in trained.ledger]
    assert kinds[0] == "run.start" and kinds[-1] == "outputs"
    assert {"inputs", "log", "checkpoint", "train.end"} <= set(kinds)


def test_input_digests_match_the_files(trained: Run) -> None:
    project = trained.project
    pred = trained.statement["predicate"]
    base = pred["base_model"]
    assert base["path_name"] == "model"
    model_files = {f.relative_to(project / "model").as_posix(): sha256(f) for f in (project / "model").iterdir()}
    assert {f["name"]: f["digest"]["sha256"] for f in base["files"]} == model_files
    assert pred["tokenizer"] == base  # tokenizer_config defaults to base_model

    datasets = {d["name"]: d for d in pred["datasets"]}
    train, evals = datasets["train.jsonl"], datasets["eval.jsonl"]
    assert train["role"] == "train" and evals["role"] == "eval"
    for entry, path in ((train, project / "data" / "train.jsonl"), (evals, project / "data" / "eval.jsonl")):
        assert entry["digest"]["sha256"] == sha256(path)
        assert entry["records"] == len(path.read_text(encoding="utf-8").splitlines())

    # The tokenized dataset Axolotl prepared and trained on: its cache folder (named by Axolotl's own
    # hash, as printed in Axolotl's log) and every Arrow shard in it.
    text = trained.proc.stdout + trained.proc.stderr
    logged = set(re.findall(r"prepared dataset in (?:\S*/)?prepared/([0-9a-f]{32})", text))
    assert logged, "axolotl did not log its prepared-dataset folder"
    shards = {f"prepared/{d}/{f.name}": f for d in logged for f in sorted((project / "prepared" / d).glob("*.arrow"))}
    assert shards
    for name, path in shards.items():
        assert datasets[name]["digest"]["sha256"] == sha256(path)
        assert datasets[name]["format"] == "arrow"
    assert {datasets[n]["role"] for n in shards} == {"train", "eval"}


def test_every_logged_step_is_in_the_ledger(trained: Run) -> None:
    # trainer_state.json is written by the transformers Trainer itself: an independent account of the logs.
    state = json.loads((trained.project / "out" / "checkpoint-4" / "trainer_state.json").read_text(encoding="utf-8"))
    history = [h for h in state["log_history"] if "loss" in h]
    assert [h["step"] for h in history] == [1, 2, 3, 4]
    logs = [e["data"] for e in trained.ledger if e["kind"] == "log"]
    by_step = {d["step"]: d for d in logs if "loss" in d["metrics"]}
    for h in history:
        assert h["step"] in by_step, f"step {h['step']} missing from the ledger"
        assert by_step[h["step"]]["metrics"]["loss"] == pytest.approx(h["loss"], rel=1e-9)
        assert by_step[h["step"]]["metrics"]["learning_rate"] == pytest.approx(h["learning_rate"], rel=1e-9)
    ends = [e["data"] for e in trained.ledger if e["kind"] == "train.end"]
    assert ends[0]["global_step"] == 4
    checkpoints = {e["data"]["path"] for e in trained.ledger if e["kind"] == "checkpoint"}
    assert checkpoints == {"checkpoint-2", "checkpoint-4"}

    from bastion.provenance.ledger import verify_ledger

    head = verify_ledger(trained.project / "out" / "bastion" / "ledger.jsonl")
    led = trained.statement["predicate"]["ledger"]
    assert (led["head"], led["entries"]) == (head.head, head.entries)


def test_statement_subjects_match_the_output_dir(trained: Run) -> None:
    subjects = {s["name"]: s["digest"]["sha256"] for s in trained.statement["subject"]}
    assert subjects == trained.files
    assert "adapter_model.safetensors" in subjects and "adapter_config.json" in subjects
    # Axolotl's debug log changes after the run (and at every later command): kept in bastion/, unsigned.
    assert "debug.log" not in subjects
    assert (trained.project / "out" / "bastion" / "axolotl-debug.log").is_file()
    outputs = trained.ledger[-1]["data"]
    assert {f["name"]: f["digest"]["sha256"] for f in outputs["files"]} == subjects


def test_resolved_config_is_recorded(trained: Run) -> None:
    from bastion.provenance.canonical import canonical_digest

    config = trained.statement["predicate"]["config"]
    value = config["value"]
    assert value["plugins"] == ["bastion.plugins.axolotl.BastionPlugin"]
    assert value["base_model"] == "./model" and value["adapter"] == "lora" and value["lora_r"] == 4
    assert value["bastion_strict"] is False  # a default filled in by Axolotl's validation: the resolved config
    assert value["datasets"][0]["path"] == "./data/train.jsonl"
    assert value["max_steps"] == 4 and value["micro_batch_size"] == 4
    assert config["digest"]["sha256"] == canonical_digest(value)
    start = trained.ledger[0]["data"]
    assert start["config"]["digest"] == config["digest"]
    assert start["framework"] == "axolotl"


def test_signed_record_verifies_and_detects_tampering(trained: Run, tmp_path: Path) -> None:
    from bastion.provenance.verify import verify

    report = trained.report
    assert report.ok, report.failures
    out = trained.project / "out"
    assert (out / "bastion" / "statement.sigstore.json").is_file() and (out / "bastion" / "model.sig").is_file()
    for checkpoint in ("checkpoint-2", "checkpoint-4"):  # bastion_sign_checkpoints: each one stands alone
        ck = verify(out / checkpoint, public_key=trained.project / "keys" / "signing.pub")
        assert ck.ok, (checkpoint, ck.failures)
    tampered = tmp_path / "out"
    shutil.copytree(out, tampered)
    data = bytearray((tampered / "adapter_model.safetensors").read_bytes())
    data[-1] ^= 0x01
    (tampered / "adapter_model.safetensors").write_bytes(bytes(data))
    bad = verify(tampered, public_key=trained.project / "keys" / "signing.pub")
    assert not bad.ok
    assert any("adapter_model.safetensors" in f.message for f in bad.failures)


@pytest.fixture(scope="module")
def merged(
    trained: Run, run_axolotl: Callable[..., subprocess.CompletedProcess[str]]
) -> subprocess.CompletedProcess[str]:
    proc = run_axolotl(trained.project, "merge-lora", "axolotl.yml")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def test_merge_lora_is_recorded_and_resigned(trained: Run, merged: subprocess.CompletedProcess[str]) -> None:
    out = trained.project / "out"
    assert "bastion: merge recorded in out/bastion and out/merged/bastion" in merged.stderr
    assert (out / "merged" / "model.safetensors").is_file()
    ledger = read_ledger(out / "bastion" / "ledger.jsonl")
    assert ledger[: len(trained.ledger)] == trained.ledger  # extended, not rewritten
    assert [e["kind"] for e in ledger[len(trained.ledger) :]] == ["merge", "outputs"]
    merge = ledger[len(trained.ledger)]["data"]
    merged_files = files_in(out / "merged")
    assert {f["name"]: f["digest"]["sha256"] for f in merge["files"]} == merged_files
    adapter = {f["name"]: f["digest"]["sha256"] for f in merge["adapter"]["files"]}
    assert adapter["adapter_model.safetensors"] == sha256(out / "adapter_model.safetensors")

    statement = json.loads((out / "bastion" / "statement.json").read_text(encoding="utf-8"))
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == files_in(out)
    assert statement["predicate"]["ledger"]["entries"] == len(ledger)
    merged_statement = json.loads((out / "merged" / "bastion" / "statement.json").read_text(encoding="utf-8"))
    assert {s["name"]: s["digest"]["sha256"] for s in merged_statement["subject"]} == merged_files
    assert merged_statement["predicate"]["merge"]["base_model"]["path_name"] == "model"

    from bastion.provenance.verify import verify

    for artifact in (out, out / "merged"):
        report = verify(artifact, public_key=trained.project / "keys" / "signing.pub")
        assert report.ok, (artifact, report.failures)
