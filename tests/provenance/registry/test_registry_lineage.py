"""The registry over real signed runs (see lineage_runs.py), on SQLite and PostgreSQL, through the CLI.

Expectations are read from what the runs recorded (their statements on disk) and from the data files
themselves, never from the registry.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from lineage_runs import LineageRuns

from bastion.provenance.datasets import record_digest
from bastion.provenance.hashing import hash_directory

sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))
from cli_runner import run

DOCS = Path(__file__).parents[3] / "docs" / "registry.md"

pytestmark = pytest.mark.slow


def _statement(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "bastion" / "statement.json").read_text())


def _run_id(directory: Path) -> str:
    return str(_statement(directory)["predicate"]["run_id"])


def _digest(directory: Path) -> str:
    return hash_directory(directory, exclude=("bastion",)).sha256


def _records(path: Path) -> list[str]:
    return [record_digest(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _add(capsys: pytest.CaptureFixture[str], runs: LineageRuns, db: str, *extra: str) -> dict[str, Any]:
    code, out, err = run(
        capsys,
        "registry",
        "add",
        str(runs.root / "runs"),
        str(runs.merged1),
        "--db",
        db,
        "--key",
        str(runs.public_key),
        "--data",
        str(runs.root / "data" / "*.jsonl"),
        "--json",
        *extra,
    )
    assert code == 0, out + err
    answer: dict[str, Any] = json.loads(out)
    return answer


def _ask(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code, out, err = run(capsys, "lineage", *args, "--json")
    assert err == "", err
    return code, json.loads(out)


def _stdlib_check() -> str:
    """The stand-alone proof check printed in docs/registry.md."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if "def check_inclusion" in b]
    return block


def _check_independently(proofs: list[dict[str, Any]], tmp_path: Path) -> list[bool]:
    """Run the docs' check in a separate interpreter that cannot import Bastion (-I: isolated, -S: no site)."""
    script = tmp_path / "check.py"
    script.write_text(
        _stdlib_check()
        + "\nimport json, sys\n"
        + "proofs = json.load(open(sys.argv[1]))\n"
        + "print(json.dumps([check_inclusion(p['record_digest'], p['index'], p['size'], p['path'], p['root'])"
        + " for p in proofs]))\n"
        + "try:\n    import bastion\n    print('bastion importable')\nexcept ImportError:\n    pass\n"
    )
    data = tmp_path / "proofs.json"
    data.write_text(json.dumps(proofs))
    res = subprocess.run([sys.executable, "-I", "-S", str(script), str(data)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "bastion importable" not in lines
    result: list[bool] = json.loads(lines[0])
    return result


def test_index_and_query_real_runs(
    capsys: pytest.CaptureFixture[str], lineage_runs: LineageRuns, registry_db: str, tmp_path: Path
) -> None:
    runs = lineage_runs
    added = _add(capsys, runs, registry_db)
    by_path = {Path(r["path"]).name: r for r in added["records"]}
    assert set(by_path) == {"r1", "r2", "r3", "r4", "r5", "merged1"}
    assert {r["status"] for r in added["records"]} == {"added"}
    assert by_path["merged1"]["kind"] == "merge" and by_path["merged1"]["run_id"] == _run_id(runs.runs["r1"])
    for name, r in by_path.items():
        directory = runs.merged1 if name == "merged1" else runs.runs[name]
        assert r["artifact_digest"] == _digest(directory)  # the manifest digest of the files on disk
    assert {Path(d["path"]).name: d["status"] for d in added["data"]} == dict.fromkeys(
        ("a.jsonl", "a2.jsonl", "b.jsonl", "d.jsonl", "e1.jsonl", "e2.jsonl"), "indexed"
    )

    # Idempotent: the same records and data again change nothing.
    again = _add(capsys, runs, registry_db)
    assert {r["status"] for r in again["records"]} == {"unchanged"}
    assert {d["status"] for d in again["data"]} == {"already indexed"}
    code, out, _ = run(capsys, "registry", "list", "--db", registry_db, "--json")
    assert code == 0 and len(json.loads(out)) == 6

    # --- erasure: the record x is in b, which r2 and r3 trained on (2 of the 5 runs), and nowhere else.
    code, answer = _ask(capsys, "record", runs.x_line, "--db", registry_db)
    assert code == 0
    x = record_digest(runs.x_record)
    assert answer["query"]["record_digest"] == x
    assert sorted(r["run_id"] for r in answer["runs"]) == sorted(_run_id(runs.runs[n]) for n in ("r2", "r3"))
    assert all(r["trained"] and r["dataset"]["sha256"] == _sha(runs.data["b"]) for r in answer["runs"])
    assert answer["derived"] == [] and answer["not_indexed"] == []
    for r in answer["runs"]:
        signed = _statement(Path(r["path"]))["predicate"]["datasets"]
        (entry,) = [d for d in signed if d["digest"]["sha256"] == r["dataset"]["sha256"]]
        assert r["proof"]["root"] == entry["merkle_root"] == r["dataset"]["signed_merkle_root"]
        assert r["proof"]["index"] == _records(runs.data["b"]).index(x) and r["proof"]["size"] == entry["records"]
    assert _check_independently([r["proof"] for r in answer["runs"]], tmp_path) == [True, True]
    # The same record given as JSON text (other key order, other spacing) has the same answer.
    reordered = json.dumps(dict(reversed(list(runs.x_record.items()))), indent=1)
    assert _ask(capsys, "record", "--record-json", reordered, "--db", registry_db)[1] == answer
    # A proof moved to another record does not verify, there or independently.
    forged = {**answer["runs"][0]["proof"], "record_digest": record_digest(runs.contaminating)}
    assert _check_independently([forged], tmp_path) == [False]
    proof_file = tmp_path / "answer.json"
    proof_file.write_text(json.dumps(answer))
    code, out, _ = run(
        capsys, "lineage", "verify-proof", str(proof_file), runs.x_line, "--statement", str(runs.runs["r2"])
    )
    assert code == 0 and out.count("OK ") == 2
    code, out, _ = run(capsys, "lineage", "verify-proof", str(proof_file), f"{runs.data['b']}:4")
    assert code == 1 and "does not verify for this record" in out
    code, out, _ = run(capsys, "lineage", "verify-proof", str(proof_file), "--statement", str(runs.runs["r5"]))
    assert code == 1 and "not one the statement signs" in out

    # --- by dataset: a was read by r1 (its run record and its merged model's record), as train.
    code, answer = _ask(capsys, "dataset", _sha(runs.data["a"]), "--db", registry_db)
    assert answer["runs"] == [_run_id(runs.runs["r1"])] and answer["records_indexed"]
    assert sorted(u["kind"] for u in answer["used_by"]) == ["merge", "run"]
    assert {u["dataset"]["role"] for u in answer["used_by"]} == {"train"}
    root_a = _statement(runs.runs["r1"])["predicate"]["datasets"][0]["merkle_root"]
    assert _ask(capsys, "dataset", root_a, "--db", registry_db)[1]["runs"] == answer["runs"]

    # --- by model: r2 trained on r1's merged model, so r1's data went into it too.
    r2 = _digest(runs.runs["r2"])
    code, answer = _ask(capsys, "model", r2, "--db", registry_db)
    assert {a["path"] for a in answer["artifacts"]} == {
        str(runs.runs["r2"]),
        str(runs.merged1),
        str(runs.runs["r1"]),
    }
    got = {(d["sha256"], d["role"]) for d in answer["datasets"]}
    want = {
        (d["digest"]["sha256"], d["role"])
        for n in ("r1", "r2")
        for d in _statement(runs.runs[n])["predicate"]["datasets"]
    }
    assert (
        got
        == want
        == {(_sha(runs.data[k]), role) for k, role in (("a", "train"), ("e1", "eval"), ("b", "train"), ("e2", "eval"))}
    )
    relations = {(e["relation"], e["via"]) for e in answer["edges"]}
    assert ("base_model", _digest(runs.merged1)) in relations and ("record_of", _run_id(runs.runs["r1"])) in relations
    assert {x["target"] for x in answer["external_inputs"]} == {_digest(runs.tiny)}
    # A model file's own digest finds the same model.
    adapter = _sha(runs.runs["r2"] / "adapter_model.safetensors")
    assert _ask(capsys, "model", adapter, "--db", registry_db)[1]["matches"] == answer["matches"]

    # --- contamination through the lineage: e2 (r2's eval set) holds a record of a (r1's training data).
    code, answer = _ask(capsys, "contamination", r2, "--db", registry_db)
    assert code == 1
    assert answer["contaminated_records"] == [record_digest(runs.contaminating)]
    assert {f["ancestor"]["run_id"] for f in answer["findings"]} == {_run_id(runs.runs["r1"])}
    assert answer["not_checked"] == []
    assert all(_check_independently([f["proof"] for f in answer["findings"]], tmp_path))
    code, answer = _ask(capsys, "contamination", _digest(runs.runs["r3"]), "--db", registry_db)
    assert code == 0 and answer["contaminated_records"] == [] and answer["ancestors"] == []
    assert _ask(capsys, "contamination", _digest(runs.runs["r1"]), "--db", registry_db)[1]["findings"] == []

    # --- dataset diff a -> a2: a2 drops a's first two records and adds three.
    code, answer = _ask(capsys, "diff", _sha(runs.data["a"]), _sha(runs.data["a2"]), "--db", registry_db)
    ra, ra2 = _records(runs.data["a"]), _records(runs.data["a2"])
    assert answer["removed"] == sorted(ra[:2]) and answer["added"] == sorted(set(ra2) - set(ra))
    assert len(answer["added"]) == 3 and answer["unchanged"] == 10


def test_tampered_record_is_refused(
    capsys: pytest.CaptureFixture[str], lineage_runs: LineageRuns, registry_db: str, tmp_path: Path
) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(lineage_runs.runs["r5"], tampered)
    with open(tampered / "adapter_model.safetensors", "r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00\x01\x02\x03")
    good = lineage_runs.runs["r3"]
    args = ("registry", "add", str(tampered), str(good), "--db", registry_db, "--key", str(lineage_runs.public_key))
    code, out, _ = run(capsys, *args)
    assert code == 1
    assert f"REFUSED {tampered}" in out and "subject.modified: adapter_model.safetensors" in out
    assert f"ADDED     {good}" in out  # the other path is still indexed
    code, out, _ = run(capsys, "registry", "list", "--db", registry_db, "--json")
    assert [a["path"] for a in json.loads(out)] == [str(good)]

    # Flagged instead of refused when asked: indexed, marked unverified with the failed check.
    code, out, _ = run(capsys, *args, "--flag-unverified", "--json")
    assert code == 0
    (flagged,) = [r for r in json.loads(out)["records"] if r["path"] == str(tampered)]
    assert flagged["status"] == "flagged" and any("subject.modified" in p for p in flagged["problems"])
    code, answer = _ask(capsys, "dataset", _sha(lineage_runs.data["d"]), "--db", registry_db)
    (use,) = answer["used_by"]
    assert use["verified"] is False and any("subject.modified" in f for f in use["failures"])

    # Another key: the signature does not verify, refused.
    from bastion.provenance.signing import generate_key_pair

    other = generate_key_pair(tmp_path / "other")
    code, out, _ = run(capsys, "registry", "add", str(good), "--db", registry_db, "--key", str(other.public_key))
    assert code == 1 and "REFUSED" in out and "signature" in out
