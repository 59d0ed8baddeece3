"""``bastion scan --jobs N``: the same redacted bytes, JSON summary, exit status and errors as one process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run

PII = {"messages": [{"role": "user", "content": "I'm ana@example.es, +34 612 345 678"}]}
CLEAN = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
IBAN = {"messages": [{"role": "user", "content": "IBAN DE89 3704 0044 0532 0130 00"}]}


def _jsonl(*records: object, end: str = "\n") -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + end for r in records).encode("utf-8")


FILES = {
    "pii-dense": _jsonl(*[PII, IBAN, PII] * 5),
    "clean": _jsonl(*[CLEAN] * 12),
    "blank-lines": _jsonl(PII, CLEAN) + b"\n  \n\n" + _jsonl(CLEAN, IBAN) + b"\n\n" + _jsonl(PII),
    "no-trailing-newline": _jsonl(CLEAN, PII, CLEAN, PII)[:-1],
    "fewer-lines-than-jobs": _jsonl(PII, CLEAN),
}


def _scan(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, data: bytes, policy: str, jobs: str
) -> tuple[int, dict[str, object], bytes]:
    src = tmp_path / "d.jsonl"
    src.write_bytes(data)
    out = tmp_path / f"out-{jobs}.jsonl"
    code, stdout, _ = run(
        capsys, "scan", str(src), "--policy", policy, "--json", "--redacted-out", str(out), "--jobs", jobs
    )
    summary = json.loads(stdout)
    assert summary.pop("redacted_out") == str(out)
    return code, summary, out.read_bytes()


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("policy", ["pack:eu-gdpr", "pack:block-all-pii"])
def test_jobs_3_same_as_jobs_1(capsys: pytest.CaptureFixture[str], tmp_path: Path, name: str, policy: str) -> None:
    one = _scan(capsys, tmp_path, FILES[name], policy, "1")
    three = _scan(capsys, tmp_path, FILES[name], policy, "3")
    assert three == one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl", "out-1.jsonl", "out-3.jsonl"]


def test_jobs_0_uses_all_cpus_same_result(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert _scan(capsys, tmp_path, FILES["pii-dense"], "pack:eu-gdpr", "0") == _scan(
        capsys, tmp_path, FILES["pii-dense"], "pack:eu-gdpr", "1"
    )


def test_report_without_json_names_later_records(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "d.jsonl"
    src.write_bytes(FILES["blank-lines"])
    code, out, _ = run(capsys, "scan", str(src), "--policy", "pack:block-all-pii", "--jobs", "3")
    assert code == 1 and "blocked records (3): 1, 4, 5" in out
    assert "example.es" not in out


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_error_same_line_no_partial_output(capsys: pytest.CaptureFixture[str], tmp_path: Path, jobs: str) -> None:
    src = tmp_path / "d.jsonl"
    src.write_bytes(_jsonl(*[PII, CLEAN] * 5) + b'{"a": \n' + _jsonl(*[CLEAN] * 6))
    out = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "scan", str(src), "--policy", "pack:eu-gdpr", "--redacted-out", str(out), "--jobs", jobs)
    assert code == 2
    assert f"error: {src}:11: record 11 is not valid JSON: Expecting value (column 7)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]  # no output, no part files


def test_stdin_with_jobs_refused(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "scan", "-", "--policy", "pack:eu-gdpr", "--jobs", "2")
    assert code == 2
    assert "--jobs needs a file" in err and "leave out --jobs" in err
