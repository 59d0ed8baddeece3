"""``bastion registry`` / ``bastion lineage`` argument errors: one clear line, the right exit status."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bastion.provenance.signing import KeyPair, generate_key_pair, sign_run
from bastion.provenance.signing.config import SigningConfig
from bastion.provenance.signing.testing import make_run_dir

sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))
from cli_runner import run


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_key_pair(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def signed_run(tmp_path: Path, keys: KeyPair) -> Path:
    out = make_run_dir(tmp_path / "run")
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    return out


def test_add_needs_trust_arguments(capsys: pytest.CaptureFixture[str], signed_run: Path, tmp_path: Path) -> None:
    code, _, err = run(capsys, "registry", "add", str(signed_run), "--db", str(tmp_path / "r.db"))
    assert code == 2 and "--key, --certificate-chain, or --identity/--issuer" in err
    assert not (tmp_path / "r.db").exists()


def test_paths_without_records_are_refused_one_by_one(
    capsys: pytest.CaptureFixture[str], signed_run: Path, keys: KeyPair, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    db = str(tmp_path / "r.db")
    args = [str(empty), str(tmp_path / "missing"), str(tmp_path / "nothing-*"), str(signed_run)]
    code, out, _ = run(capsys, "registry", "add", *args, "--db", db, "--key", str(keys.public_key))
    assert code == 1
    assert f"REFUSED {empty}\n  no run record under {empty} (no bastion/statement.json in it or below it)" in out
    assert f"  {tmp_path / 'missing'} does not exist" in out
    assert f"  {tmp_path / 'nothing-*'} matches nothing" in out
    assert f"ADDED     {signed_run}: run of run run-0001" in out
    assert "3 refused" in out


def test_a_folder_of_runs_is_searched(capsys: pytest.CaptureFixture[str], keys: KeyPair, tmp_path: Path) -> None:
    for i in range(3):
        out = make_run_dir(tmp_path / "runs" / f"team-{i}" / "out", run_id=f"run-{i}")
        sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    code, out, _ = run(
        capsys, "registry", "add", str(tmp_path / "runs"), "--db", str(tmp_path / "r.db"), "--key", str(keys.public_key)
    )
    assert code == 0 and out.count("ADDED") == 3
    # The record folder or its statement name the same run directory.
    one = tmp_path / "runs" / "team-1" / "out"
    db = ("--db", str(tmp_path / "r.db"), "--key", str(keys.public_key))
    for arg in (one / "bastion", one / "bastion" / "statement.json"):
        code, out, _ = run(capsys, "registry", "add", str(arg), *db)
        assert code == 0 and out.startswith(f"UNCHANGED {one}:"), out


def test_lineage_record_argument_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"a": 1}\n\nnot json\n')
    db = ["--db", str(tmp_path / "r.db")]
    cases = [
        ([str(data)], "expected FILE:LINE with a 1-based line number"),
        ([f"{data}:0"], "expected FILE:LINE with a 1-based line number"),
        ([f"{data}:9"], "the file has fewer than 9 lines"),
        ([f"{data}:2"], "the line is blank"),
        ([f"{data}:3"], "the line is not a JSON record"),
        ([f"{tmp_path / 'nope.jsonl'}:1"], "file not found"),
        (["--record-json", "{oops"], "--record-json is not valid JSON"),
        (["--digest", "abc"], "--digest must be a SHA-256 digest (64 hex digits)"),
    ]
    for args, message in cases:
        code, out, err = run(capsys, "lineage", "record", *args, *db)
        assert code == 2 and message in err and out == "", (args, err)
        assert len(err.splitlines()) <= 2, err  # the message and its hint, never a traceback
    code, _, err = run(capsys, "lineage", "record", f"{data}:1", "--digest", "a" * 64, *db)
    assert code == 2 and "name the record once" in err


def test_lineage_queries_on_an_empty_registry(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = ["--db", str(tmp_path / "r.db")]
    code, out, _ = run(capsys, "lineage", "model", "b" * 64, *db)
    assert code == 1 and "no indexed artifact has the digest" in out
    code, _, err = run(capsys, "lineage", "diff", "a" * 64, "b" * 64, *db)
    assert code == 2 and f"dataset {'a' * 64} has no indexed records" in err and "add-data" in err
    code, _, err = run(capsys, "lineage", "dataset", "sha256:XYZ", *db)
    assert code == 2 and "must be a SHA-256 digest" in err
    code, out, _ = run(capsys, "lineage", "record", "--digest", "c" * 64, *db, "--json")
    assert code == 0 and json.loads(out)["runs"] == []


def test_verify_proof_refuses_unreadable_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    code, _, err = run(capsys, "lineage", "verify-proof", str(bad))
    assert code == 2 and "cannot read the proof file" in err
    bad.write_text('{"runs": []}')
    code, _, err = run(capsys, "lineage", "verify-proof", str(bad))
    assert code == 2 and "holds no proofs" in err


def test_add_data_says_what_it_did_with_each_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "table.csv").write_text("a,b\n1,2\n")
    (tmp_path / "d" / "other.jsonl").write_text('{"x": 1}\n')
    code, out, _ = run(capsys, "registry", "add-data", str(tmp_path / "d"), "--db", str(tmp_path / "r.db"), "--json")
    assert code == 0
    got = {Path(d["path"]).name: (d["status"], d["problems"]) for d in json.loads(out)}
    assert got == {
        "other.jsonl": ("unused", []),
        "table.csv": ("skipped", ["csv files have no per-record digests (only JSON and JSONL do)"]),
    }
    code, out, _ = run(capsys, "registry", "add-data", str(tmp_path / "missing.jsonl"), "--db", str(tmp_path / "r.db"))
    assert code == 1 and "does not exist or matches nothing" in out
