"""``bastion report --model DIGEST``: the report of an indexed run (lineage_runs.py), found by an artifact digest."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from lineage_runs import LineageRuns

from bastion.provenance.hashing import hash_directory

sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))
from cli_runner import run

pytestmark = pytest.mark.slow


def _run_id(directory: Path) -> str:
    return str(json.loads((directory / "bastion" / "statement.json").read_text())["predicate"]["run_id"])


def _indexed(capsys: pytest.CaptureFixture[str], runs: LineageRuns, db: str) -> None:
    code, out, _ = run(
        capsys, "registry", "add", str(runs.root / "runs"), str(runs.merged1), "--db", db, "--key", str(runs.public_key)
    )
    assert code == 0, out


def test_report_of_a_model_from_the_registry_uses_the_pinned_key_and_shows_lineage(
    capsys: pytest.CaptureFixture[str], lineage_runs: LineageRuns, registry_db: str, tmp_path: Path
) -> None:
    runs = lineage_runs
    _indexed(capsys, runs, registry_db)
    # r2 trained on merged1 (r1's merge): the report of r2's outputs, with no trust argument given.
    r2 = runs.runs["r2"]
    digest = hash_directory(r2, exclude=("bastion",)).sha256
    out_json, out_html = tmp_path / "r2.json", tmp_path / "r2.html"
    code, out, err = run(
        capsys, "report", "--model", digest, "--db", registry_db, "--json", str(out_json), "--out", str(out_html)
    )
    assert code == 0, out + err
    assert out.startswith(f"OK run {_run_id(r2)} verifies")
    content: dict[str, Any] = json.loads(out_json.read_text())
    assert content["source"]["kind"] == "registry" and content["source"]["path"] == str(r2.absolute())
    assert content["source"]["artifact_digest"] == digest
    trust = content["verification"]["trust"]
    assert trust["pinned_by_registry"] is True and len(trust["public_keys"]) == 1
    assert content["verification"]["ok"] and "signature" in content["verification"]["passed"]
    assert not any("no trust material" in w for w in content["warnings"]["report"])

    reg = content["lineage"]["registry"]
    ancestors = {(a["run_id"], a["kind"], a["path"]) for a in reg["ancestors"]}
    r1 = runs.runs["r1"]
    assert (_run_id(r1), "merge", str(runs.merged1.absolute())) in ancestors
    assert (_run_id(r1), "run", str(r1.absolute())) in ancestors
    # merged1 is drawn as producing the base model node of r2's record, r1 left of it.
    merged_digest = hash_directory(runs.merged1, exclude=("bastion",)).sha256
    by_id = {n["id"]: n for n in content["lineage"]["nodes"]}
    merge_node = next(n for n in by_id.values() if n["kind"] == "indexed merge")
    assert merge_node["sha256"] == merged_digest
    edges = {(e["from"], e["to"]) for e in content["lineage"]["edges"]}
    assert (merge_node["id"], f"model:{merged_digest}") in edges
    (arrow,) = [e for e in content["lineage"]["edges"] if e["from"] == merge_node["id"]]
    assert arrow["relation"] == "produced (base_model, tokenizer)"  # merged1 is both: one arrow
    run_node = next(n for n in by_id.values() if n["kind"] == "indexed run")
    assert run_node["label"] == _run_id(r1) and (run_node["id"], merge_node["id"]) in edges
    assert run_node["column"] < merge_node["column"]
    assert reg["derived"] == []
    page = out_html.read_text()
    assert "indexed merge" in page and _run_id(r1) in page and "the run registry" in page

    # r1's report shows what was derived from it: its merge, and r2 trained on that.
    r1_digest = hash_directory(r1, exclude=("bastion",)).sha256
    code, out, _ = run(capsys, "report", "--model", r1_digest, "--db", registry_db, "--json", str(out_json))
    assert code == 0, out
    r1_content = json.loads(out_json.read_text())
    derived = r1_content["lineage"]["registry"]["derived"]
    # merged1's own record hangs off the merge output r1's record names; r2 off merged1.
    edges = {(e["from"], e["relation"], e["to"]) for e in r1_content["lineage"]["edges"]}
    merge_id = next(f"registry:{d['artifact']['record_id']}" for d in derived if d["artifact"]["kind"] == "merge")
    r2_id = next(f"registry:{d['artifact']['record_id']}" for d in derived if d["artifact"]["kind"] == "run")
    assert (f"output:{merged_digest}", "indexed record", merge_id) in edges
    assert (merge_id, "base_model", r2_id) in edges
    assert {(d["artifact"]["run_id"], d["artifact"]["kind"]) for d in derived} == {
        (_run_id(r1), "merge"),
        (_run_id(r2), "run"),
    }


def test_unknown_digest_is_a_clear_error_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], lineage_runs: LineageRuns, tmp_path: Path
) -> None:
    db = str(tmp_path / "r.sqlite3")
    _indexed(capsys, lineage_runs, db)
    out_html = tmp_path / "report.html"
    code, out, err = run(capsys, "report", "--model", "e" * 64, "--db", db, "--out", str(out_html))
    assert code == 2 and out == "" and f"no indexed artifact has the digest {'e' * 64}" in err
    assert "bastion registry list" in err and not out_html.exists()
    assert list(tmp_path.glob(".report.html.*")) == []
    code, _, err = run(capsys, "report", "--model", "xyz", "--db", db, "--out", str(out_html))
    assert code == 2 and "SHA-256" in err and not out_html.exists()
    code, _, err = run(capsys, "report", str(lineage_runs.runs["r1"]), "--model", "e" * 64, "--out", str(out_html))
    assert code == 2 and "name the run once" in err and not out_html.exists()
