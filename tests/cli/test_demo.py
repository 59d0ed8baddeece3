"""`bastion demo` end to end, as a user runs it: a subprocess, a fresh directory, a short run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from bastion.provenance import load_statement, verify_ledger


def _bastion(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_demo_runs_signs_and_verifies(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    proc = _bastion("demo", "--output-dir", str(out), "--steps", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    assert "Traceback" not in proc.stderr

    run = out / "run"
    statement = load_statement(run / "bastion" / "statement.json")
    pred = statement["predicate"]
    # What the summary prints is what is on disk.
    assert pred["run_id"] in text
    assert f"entries {pred['ledger']['entries']}" in text and pred["ledger"]["head"][:16] in text
    assert "train.jsonl" in text and "eval.jsonl" in text
    for ds in pred["datasets"]:
        name = {"train": "train.jsonl", "eval": "eval.jsonl"}[ds["role"]]
        sha = hashlib.sha256((out / "inputs" / "data" / name).read_bytes()).hexdigest()
        assert ds["digest"]["sha256"] == sha and sha[:16] in text
    assert pred["metrics"]["global_step"] == 2
    verify_ledger(run / "bastion" / "ledger.jsonl", expected_head=pred["ledger"]["head"])
    subjects = {s["name"] for s in statement["subject"]}
    assert "adapter_model.safetensors" in subjects and "checkpoint-1/adapter_model.safetensors" in subjects
    for name in subjects:
        assert name in text

    # The whole trust chain: a demo key pair, a bundle and model signature, verified by the real verifier.
    assert (out / "keys" / "signing.pub").is_file()
    assert (run / "bastion" / "statement.sigstore.json").is_file() and (run / "bastion" / "model.sig").is_file()
    assert "verified" in text and "FAILED" not in text
    bundle = json.loads((run / "bastion" / "statement.sigstore.json").read_text(encoding="utf-8"))
    assert "dsseEnvelope" in bundle

    # The command the summary suggests works as printed.
    suggested = next(line for line in text.splitlines() if "verify it yourself:" in line).split(": ", 1)[1]
    assert suggested.split()[:2] == ["bastion", "verify"]
    checked = _bastion(*suggested.split()[1:], cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # A second run into the same folder is refused with a clear message, not a traceback.
    again = _bastion("demo", "--output-dir", str(out), "--steps", "1", cwd=tmp_path)
    assert again.returncode == 2
    assert "already holds a demo run" in again.stderr and "--force" in again.stderr
    assert "Traceback" not in again.stderr
