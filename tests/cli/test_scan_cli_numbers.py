"""``bastion scan`` on numbers the JSON rules refuse (issue 16 part 3): exit 2 with a located one-line
error, never a traceback; a redacted JSON number comes out as a valid JSON string."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run


@pytest.mark.parametrize(
    ("number", "why"),
    [("4" * 4301, "an integer with 4301 digits"), ("5" * 5000, "an integer with 5000 digits"), ("1e400", "Infinity")],
)
def test_refused_number_is_exit_2_without_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, number: str, why: str
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"a": "ok"}\n{"a": ' + number + "}\n", encoding="utf-8")
    code, out, err = run(capsys, "scan", str(data), "--policy", "pack:eu-gdpr", "--no-progress")
    assert code == 2
    assert f"d.jsonl:2: record 2 is not accepted: {why}" in err or why in err
    assert "Traceback" not in err + out and number not in err + out


def test_phone_number_as_json_number_is_redacted_to_a_string(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"phone": 4915123456789, "n": 3}\n', encoding="utf-8")
    out_path = tmp_path / "out.jsonl"
    code, _, _ = run(
        capsys, "scan", str(data), "--policy", "pack:eu-gdpr", "--no-progress", "--redacted-out", str(out_path)
    )
    assert code == 0
    assert json.loads(out_path.read_text(encoding="utf-8")) == {"phone": "[PHONE]", "n": 3}
