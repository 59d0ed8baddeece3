"""``bastion scan``: report, JSON summary, redacted output and exit codes (0 allow/redact, 1 block, 2 bad input)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


CHAT = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]},
    {"messages": [{"role": "user", "content": "I'm ana@example.es, +34 612 345 678"}]},
    {"messages": [{"role": "user", "content": "no data"}]},
]


def test_redact_exit_0_report_without_data(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", CHAT)
    out_path = tmp_path / "out.jsonl"
    code, out, _ = run(capsys, "scan", str(data), "--policy", "pack:eu-gdpr", "--redacted-out", str(out_path))
    assert code == 0
    assert "REDACT" in out and "EMAIL" in out and "PHONE" in out
    assert "example.es" not in out and "612" not in out
    lines = out_path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == json.dumps(CHAT[0], ensure_ascii=False)
    assert json.loads(lines[1])["messages"][0]["content"] == "I'm [EMAIL], [PHONE]"


def test_json_summary(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", CHAT)
    code, out, _ = run(capsys, "scan", str(data), "--policy", "pack:eu-gdpr", "--json")
    assert code == 0
    summary = json.loads(out)
    assert summary["decision"] == "redact" and summary["records"] == 3
    assert summary["entity_counts"] == {"EMAIL": 1, "PHONE": 1}
    assert summary["details"] == [
        {
            "record": 2,
            "line": 2,
            "action": "redact",
            "entities": {"EMAIL": 1, "PHONE": 1},
            "rule_ids": ["email", "phone"],
        }
    ]
    assert summary["policy"] == "eu-gdpr"


def test_allow_exit_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [CHAT[0], CHAT[2]])
    code, out, _ = run(capsys, "scan", str(data), "--policy", "pack:block-all-pii")
    assert code == 0 and "ALLOW" in out


def test_block_exit_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", CHAT)
    code, out, _ = run(capsys, "scan", str(data), "--policy", "pack:block-all-pii", "--json")
    assert code == 1
    summary = json.loads(out)
    assert summary["decision"] == "block" and summary["blocked_records"] == [2]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"a": 1}\n{"a": \n', "d.jsonl:2: record 2 is not valid JSON: Expecting value (column 7)"),
        (b'{"a": "\xff"}\n', "d.jsonl:1: not valid UTF-8 (byte 8 of the line)"),
        (b"", "d.jsonl: no records: the input is empty"),
    ],
)
def test_bad_input_exit_2_no_partial_output(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, message: str
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(content)
    out_path = tmp_path / "out.jsonl"
    code, _, err = run(capsys, "scan", str(data), "--policy", "pack:eu-gdpr", "--redacted-out", str(out_path))
    assert code == 2
    assert f"error: {tmp_path}/{message}" in err
    assert not out_path.exists()
    assert list(tmp_path.iterdir()) == [data]  # no temp file left behind


def test_over_long_line_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"a": "x" * 200}])
    code, _, err = run(capsys, "scan", str(data), "--policy", "pack:eu-gdpr", "--max-line-bytes", "100")
    assert code == 2 and "d.jsonl:1: line is longer than the limit of 100 bytes" in err


def test_missing_file_and_bad_policy_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "scan", str(tmp_path / "nope.jsonl"), "--policy", "pack:eu-gdpr")
    assert code == 2 and "nope.jsonl: file not found" in err
    data = write_jsonl(tmp_path / "d.jsonl", CHAT)
    code, _, err = run(capsys, "scan", str(data), "--policy", "pack:nope")
    assert code == 2 and "unknown policy pack 'nope'" in err
