"""``bastion policy check|test|packs``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run

POLICY = """name: team
detectors:
  - {id: email, type: email, action: redact}
  - {id: card, type: payment_card, action: block}
upstreams:
  - {id: openai, jurisdiction: US}
residency:
  - {id: personal-eu, classifications: [personal, special], jurisdictions: [EU]}
  - {id: rest, classifications: [public, internal], jurisdictions: ["*"]}
"""

CASES = """cases:
  - name: email redacted
    record: {"messages": [{"role": "user", "content": "write to ana@example.es"}]}
    expect:
      decision: redact
      entities: [EMAIL]
      redacted: {"messages": [{"role": "user", "content": "write to [EMAIL]"}]}
  - name: card blocks
    text: "card 4111 1111 1111 1111"
    expect: {decision: block, entities: [PAYMENT_CARD]}
  - name: clean
    text: "hello"
    expect: {decision: allow, entities: []}
  - name: personal data not to the US
    residency: {upstream: openai, classification: personal}
    expect: {allowed: false, rule_id: personal-eu}
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(POLICY)
    return path


def test_check_prints_summary(capsys: pytest.CaptureFixture[str], policy_file: Path) -> None:
    code, out, _ = run(capsys, "policy", "check", str(policy_file))
    assert code == 0
    assert "policy team" in out and "OK" in out
    for word in ("email", "payment_card", "redact", "block", "openai", "US", "personal-eu"):
        assert word in out


def test_check_pack(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "check", "pack:eu-gdpr")
    assert code == 0 and "eu-gdpr" in out


def test_check_bad_policy_exit_2_with_location(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndetectors:\n  - id: e\n    type: email\n    action: drop\n")
    code, _, err = run(capsys, "policy", "check", str(bad))
    assert code == 2
    assert f"error: {bad}:5: detectors[0].action: Input should be 'allow', 'redact' or 'block' (got 'drop')" in err
    assert "Traceback" not in err


def test_check_real_entry_point_exit_code(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ndetectors:\n  - {id: e, type: mail}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "policy", "check", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "unknown detector type 'mail'" in proc.stderr and "Traceback" not in proc.stderr


def test_test_all_pass(capsys: pytest.CaptureFixture[str], policy_file: Path, tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text(CASES)
    code, out, _ = run(capsys, "policy", "test", str(policy_file), str(cases))
    assert code == 0, out
    assert out.count("PASS") == 4 and "4 passed, 0 failed" in out


def test_test_mismatch_exit_1(capsys: pytest.CaptureFixture[str], policy_file: Path, tmp_path: Path) -> None:
    cases = tmp_path / "cases.jsonl"
    lines = [
        {"name": "ok", "text": "ana@example.es", "expect": {"decision": "redact", "redacted_text": "[EMAIL]"}},
        {"name": "wrong decision", "text": "ana@example.es", "expect": {"decision": "allow"}},
        {"name": "wrong entities", "text": "+49 30 901820", "expect": {"decision": "allow", "entities": ["PHONE"]}},
    ]
    cases.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    code, out, _ = run(capsys, "policy", "test", str(policy_file), str(cases))
    assert code == 1
    assert "PASS  ok" in out
    assert f"FAIL  wrong decision ({cases}:2)" in out and "expected decision allow, got redact" in out
    assert "FAIL  wrong entities" in out and "expected entities ['PHONE'], got []" in out
    assert "1 passed, 2 failed" in out


def test_test_bad_cases_file(capsys: pytest.CaptureFixture[str], policy_file: Path, tmp_path: Path) -> None:
    cases = tmp_path / "cases.yaml"
    cases.write_text("- name: x\n  text: hi\n  expect: {decision: maybe}\n")
    code, _, err = run(capsys, "policy", "test", str(policy_file), str(cases))
    assert code == 2
    assert f"{cases}:3: case 1: expect.decision: Input should be 'allow', 'redact' or 'block'" in err


def test_packs_lists_bundled(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "packs")
    assert code == 0 and "pack:eu-gdpr" in out and "pack:block-all-pii" in out
