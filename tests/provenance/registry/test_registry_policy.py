"""The deploy-policy rule ``lineage_contamination: none``: ``bastion verify --policy P --registry DB`` over the
real runs of lineage_runs.py (r2's eval set holds a record of the data r1, its ancestor, trained on)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from lineage_runs import LineageRuns

sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))
from cli_runner import run

pytestmark = pytest.mark.slow


def _failures(out: str) -> dict[str, str]:
    return {f["check"]: f["message"] for f in json.loads(out)["failures"]}


def test_contamination_through_the_lineage_fails_the_policy(
    capsys: pytest.CaptureFixture[str], lineage_runs: LineageRuns, registry_db: str, tmp_path: Path
) -> None:
    runs = lineage_runs
    policy = tmp_path / "policy.yaml"
    policy.write_text("lineage_contamination: none\n")
    key = ("--key", str(runs.public_key), "--policy", str(policy), "--json")
    data = str(runs.root / "data" / "*.jsonl")
    code, out, _ = run(capsys, "registry", "add", str(runs.root / "runs"), str(runs.merged1), "--db", registry_db,
                       "--key", str(runs.public_key))  # fmt: skip
    assert code == 0, out

    # Record digests not indexed yet: contamination cannot be ruled out, so the rule fails closed.
    code, out, _ = run(capsys, "verify", str(runs.runs["r2"]), *key, "--registry", registry_db)
    assert code == 1 and "have no indexed record digests" in _failures(out)["policy.lineage_contamination"]

    code, out, _ = run(capsys, "registry", "add-data", data, "--db", registry_db)
    assert code == 0, out
    code, out, _ = run(capsys, "verify", str(runs.runs["r2"]), *key, "--registry", registry_db)
    assert code == 1
    message = _failures(out)["policy.lineage_contamination"]
    r1_id = json.loads((runs.runs["r1"] / "bastion" / "statement.json").read_text())["predicate"]["run_id"]
    assert message.startswith("1 eval record(s) of this run are in the training data of its ancestor(s)")
    assert f"{r1_id} (a.jsonl)" in message and "bastion lineage contamination" in message
    assert set(_failures(out)) == {"policy.lineage_contamination"}  # the signature and files are fine

    # r1 (its base model is not an indexed artifact) and r3 (no eval set) pass.
    for name in ("r1", "r3"):
        code, out, _ = run(capsys, "verify", str(runs.runs[name]), *key, "--registry", registry_db)
        assert code == 0 and "policy" in json.loads(out)["passed"], out


def test_the_rule_needs_a_registry_that_indexes_the_run(
    capsys: pytest.CaptureFixture[str], lineage_runs: LineageRuns, tmp_path: Path
) -> None:
    runs = lineage_runs
    policy = tmp_path / "policy.yaml"
    policy.write_text("lineage_contamination: none\n")
    key = ("--key", str(runs.public_key), "--policy", str(policy), "--json")
    code, out, _ = run(capsys, "verify", str(runs.runs["r1"]), *key)
    assert code == 1 and "pass --registry DB" in _failures(out)["policy.lineage_contamination"]
    code, out, _ = run(capsys, "verify", str(runs.runs["r1"]), *key, "--registry", str(tmp_path / "empty.sqlite3"))
    assert code == 1 and "is not indexed in the run registry" in _failures(out)["policy.lineage_contamination"]
    code, _, err = run(capsys, "verify", str(runs.runs["r1"]), "--key", str(runs.public_key), "--registry", "x.db")
    assert code == 2 and "give --policy" in err
    policy.write_text("lineage_contamination: sometimes\n")
    code, _, err = run(capsys, "verify", str(runs.runs["r1"]), *key)
    assert code == 2 and "lineage_contamination" in err
