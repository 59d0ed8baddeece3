"""``bastion ledger verify`` and ``bastion ledger show``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run

from bastion.provenance.ledger import Ledger

BASTION = str(Path(sys.executable).parent / "bastion")


@pytest.fixture
def ledger(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    p = tmp_path / "ledger.jsonl"
    with Ledger(p, fsync="never") as led:
        entries = [led.append("run.start", {"run_id": "r1"})]
        entries += [led.append("log", {"step": i, "metrics": {"loss": 2.0 - i / 10}}) for i in range(1, 6)]
        entries.append(led.append("outputs", {"files": 3}))
    return p, entries


def test_verify_ok(ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]) -> None:
    p, entries = ledger
    code, out, err = run(capsys, "ledger", "verify", str(p))
    assert code == 0
    assert out == f"OK: {p}: 7 entries, head {entries[-1]['hash']}\n"
    assert err.startswith("note: head not checked: no statement.json beside the ledger")  # said, not hidden
    code, out, _ = run(capsys, "ledger", "verify", str(p), "--json", "--expect-head", entries[-1]["hash"].upper())
    assert code == 0
    assert json.loads(out) == {
        "ok": True,
        "path": str(p),
        "entries": 7,
        "head": entries[-1]["hash"],
        "head_checked_against": "--expect-head/--expect-entries",
    }


def test_verify_reports_the_first_broken_line(
    ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    p, _ = ledger
    lines = p.read_text().splitlines(keepends=True)
    lines[3] = lines[3].replace('"step":3', '"step":30')
    p.write_text("".join(lines))
    code, out, err = run(capsys, "ledger", "verify", str(p))
    assert code == 1 and out == ""
    assert err.startswith(f"FAILED: {p}:4: entry was edited")
    assert "hint:" in err
    code, out, _ = run(capsys, "ledger", "verify", str(p), "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["line"] == 4 and doc["path"] == str(p)
    assert doc["reason"] == "entry was edited: its content does not match its hash"
    assert doc["hint"]


def test_verify_detects_truncation_with_the_expected_head(
    ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    p, entries = ledger
    p.write_text("".join(p.read_text().splitlines(keepends=True)[:-1]))
    code, _, _ = run(capsys, "ledger", "verify", str(p))
    assert code == 0  # the remaining chain is intact...
    code, out, _ = run(
        capsys, "ledger", "verify", str(p), "--expect-head", entries[-1]["hash"], "--expect-entries", "7", "--json"
    )
    assert code == 1  # ...but it no longer ends where the statement says
    doc = json.loads(out)
    assert doc["line"] == 7 and "truncated" in doc["reason"]


def test_verify_detects_reordering(
    ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    p, _ = ledger
    lines = p.read_text().splitlines(keepends=True)
    lines[2], lines[5] = lines[5], lines[2]
    p.write_text("".join(lines))
    code, out, _ = run(capsys, "ledger", "verify", str(p), "--json")
    assert code == 1 and json.loads(out)["line"] == 3


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["ledger", "verify", "{p}/nope.jsonl"], 2, "error: ledger not found: {p}/nope.jsonl"),
        (["ledger", "verify", "{p}"], 2, "error: cannot read the ledger {p}"),
        (["ledger", "verify", "{p}/x.jsonl", "--expect-head", "abc"], 2, "64-hex-digit"),
        (["ledger", "show", "{p}/nope.jsonl"], 2, "error: ledger not found"),
        (["ledger", "show", "{p}/x.jsonl", "--tail", "0"], 2, "--tail"),
    ],
)
def test_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, needle: str) -> None:
    got, out, err = run(capsys, *(a.format(p=tmp_path) for a in args))
    assert got == code
    assert needle.format(p=tmp_path) in err
    assert "Traceback" not in err and out == ""


def test_show_lists_entries_and_chain_status(
    ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    p, entries = ledger
    code, out, err = run(capsys, "ledger", "show", str(p))
    assert code == 0 and err == ""
    for e in entries:
        assert e["time"] in out
    assert '{"metrics":{"loss":1.9},"step":1}' in out
    assert "7 of 7 entries shown" in out
    assert out.rstrip().endswith(f"chain OK: 7 entries, head {entries[-1]['hash']}")


def test_show_tail_and_kind(ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]) -> None:
    p, entries = ledger
    code, out, _ = run(capsys, "ledger", "show", str(p), "--tail", "2")
    assert code == 0
    assert "2 of 7 entries shown" in out
    assert entries[-1]["time"] in out and entries[-2]["time"] in out and entries[-3]["time"] not in out
    code, out, err = run(capsys, "ledger", "show", str(p), "--kind", "log", "--json")
    assert code == 0
    shown = [json.loads(line) for line in out.splitlines()]
    assert shown == entries[1:6]
    assert err.startswith("chain OK")  # with --json the status goes to stderr, stdout stays JSON lines


def test_show_on_a_broken_ledger_exits_1(
    ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    p, _ = ledger
    lines = p.read_text().splitlines(keepends=True)
    p.write_text("".join([*lines[:4], "garbage\n", *lines[4:]]))
    code, out, err = run(capsys, "ledger", "show", str(p))
    assert code == 1
    assert "4 of 4 entries shown" in out
    assert f"chain BROKEN: {p}:5: line is not valid JSON" in err


def test_real_entry_point(ledger: tuple[Path, list[dict[str, Any]]]) -> None:
    p, entries = ledger
    ok = subprocess.run([BASTION, "ledger", "verify", str(p)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and entries[-1]["hash"] in ok.stdout
    p.write_bytes(p.read_bytes()[:-10])  # cut the last entry mid-line
    bad = subprocess.run([BASTION, "ledger", "verify", str(p)], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert f"{p}:7: the last line is torn" in bad.stderr and "bastion ledger repair" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_show_prints_markup_like_data_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p) as led:
        led.append("[bold]kind", {"note": "[/bold] [red]not markup"})
    code, out, _ = run(capsys, "ledger", "show", str(p))
    assert code == 0
    assert "[bold]kind" in out and '{"note":"[/bold] [red]not markup"}' in out


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"data":{"n":' + b"7" * 4301 + b"}}", "a number with 4301 digits"),
        (b'{"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
    ],
    ids=["4301-digit-int", "100000-deep"],
)
def test_verify_json_names_the_line_of_a_hostile_entry(
    ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str], line: bytes, reason: str
) -> None:
    p, _ = ledger
    p.write_bytes(p.read_bytes() + line + b"\n")
    code, out, err = run(capsys, "ledger", "verify", str(p), "--json")
    assert code == 1 and "Traceback" not in err
    doc = json.loads(out)
    assert doc["ok"] is False and doc["line"] == 8 and reason in doc["reason"]
    code, out, err = run(capsys, "ledger", "verify", str(p))
    assert code == 1 and f"{p}:8: " in err and reason in err


def test_verify_json_for_an_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "ledger", "verify", str(tmp_path / "nope.jsonl"), "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["ok"] is False and doc["line"] is None and "ledger not found" in doc["reason"]


# --- the statement beside the ledger: removed last entries are caught ----------------------------


def _run_record(tmp_path: Path, n: int = 4) -> tuple[Path, list[dict[str, Any]]]:
    """<out>/bastion/ledger.jsonl + statement.json recording its head, as a finished run leaves them."""
    record = tmp_path / "out" / "bastion"
    with Ledger(record / "ledger.jsonl") as led:
        entries = [led.append("log", {"step": i}) for i in range(n)]
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "predicate": {"ledger": {"path": "bastion/ledger.jsonl", "head": entries[-1]["hash"], "entries": n}},
    }
    (record / "statement.json").write_text(json.dumps(statement))
    return record / "ledger.jsonl", entries


def test_verify_checks_the_head_in_the_statement_beside_the_ledger(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p, entries = _run_record(tmp_path)
    code, out, err = run(capsys, "ledger", "verify", str(p))
    assert code == 0 and err == ""
    assert (
        out
        == f"OK: {p}: 4 entries, head {entries[-1]['hash']} (matches the head recorded in {p.parent}/statement.json)\n"
    )
    p.write_bytes(b"".join(p.read_bytes().splitlines(keepends=True)[:-1]))  # the last whole line removed
    code, out, err = run(capsys, "ledger", "verify", str(p))
    assert code == 1 and out == ""
    assert f"FAILED: {p}:4: ledger has 3 entries but the signed statement records 4 (it was truncated" in err
    assert f"checked against the head recorded in {p.parent}/statement.json" in err
    code, out, _ = run(capsys, "ledger", "verify", str(p), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["line"] == 4 and doc["head_checked_against"].endswith("statement.json")


@pytest.mark.parametrize(
    ("statement", "note"),
    [
        (None, "no statement.json beside the ledger"),
        ("{not json", "cannot be read as JSON"),
        ('{"predicate": {}}', "records no ledger"),
        (
            '{"predicate": {"ledger": {"path": "bastion/other.jsonl", "head": "' + "a" * 64 + '"}}}',
            "not 'ledger.jsonl'",
        ),
        ('{"predicate": {"ledger": {"path": "bastion/ledger.jsonl", "head": "abc"}}}', "no valid ledger head"),
    ],
)
def test_verify_says_when_the_head_cannot_be_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], statement: str | None, note: str
) -> None:
    p, _entries = _run_record(tmp_path)
    stmt = p.parent / "statement.json"
    if statement is None:
        stmt.unlink()
    else:
        stmt.write_text(statement)
    p.write_bytes(b"".join(p.read_bytes().splitlines(keepends=True)[:-1]))
    code, out, err = run(capsys, "ledger", "verify", str(p))
    assert code == 0 and out.startswith(f"OK: {p}: 3 entries")  # the chain itself is intact...
    assert err.startswith("note: head not checked: ") and note in err  # ...and the report says what was not checked
    code, out, _ = run(capsys, "ledger", "verify", str(p), "--json")
    doc = json.loads(out)
    assert doc["head_checked_against"] is None and note in doc["head_not_checked"]


def test_expect_head_overrides_the_statement(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p, entries = _run_record(tmp_path)
    code, _, err = run(capsys, "ledger", "verify", str(p), "--expect-head", entries[1]["hash"])
    assert code == 1 and "head is" in err and "--expect-head" in err


# --- repair ------------------------------------------------------------------------------------


def test_repair_command(ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]) -> None:
    p, _entries = ledger
    size = p.stat().st_size
    with open(p, "ab") as fh:
        fh.write(b'{"data":{"sec')
    code, _, err = run(capsys, "ledger", "verify", str(p))
    assert code == 1 and "the last line is torn" in err and f"bastion ledger repair {p}" in err
    code, out, err = run(capsys, "ledger", "repair", str(p))
    assert code == 0, err
    digest = hashlib.sha256(b'{"data":{"sec').hexdigest()
    assert out.startswith(f"repaired {p}: cut 13 bytes from byte {size} on (sha256 {digest}); recorded as entry 7")
    code, out, _ = run(capsys, "ledger", "verify", str(p))
    assert code == 0 and out.startswith(f"OK: {p}: 8 entries")
    code, out, _ = run(capsys, "ledger", "repair", str(p))
    assert code == 0 and out == f"nothing to repair: {p} ends with a whole entry (8 entries verify)\n"


def test_repair_command_refuses_other_damage(
    ledger: tuple[Path, list[dict[str, Any]]], capsys: pytest.CaptureFixture[str]
) -> None:
    p, _ = ledger
    lines = p.read_bytes().splitlines(keepends=True)
    p.write_bytes(b"".join([lines[0], lines[2], *lines[3:]]) + b'{"torn')
    before = p.read_bytes()
    code, out, err = run(capsys, "ledger", "repair", str(p))
    assert code == 1 and out == ""
    assert f"NOT REPAIRED: {p}:2: sequence number is 2, expected 1" in err and "damaged elsewhere" in err
    assert p.read_bytes() == before
    code, _, err = run(capsys, "ledger", "repair", str(p.parent / "nope.jsonl"))
    assert code == 2 and "ledger not found" in err
