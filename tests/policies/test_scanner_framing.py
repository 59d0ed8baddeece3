"""JSONL framing of uploads (found by tests/fuzz/fuzz_jsonl.py): clean ScanErrors, never other exceptions."""

from __future__ import annotations

import pytest

from bastion.policies import JsonlScanner, PolicyEngine, ScanError, load_policy

ENGINE = PolicyEngine(load_policy("pack:eu-gdpr"))


@pytest.mark.parametrize(
    "line",
    [
        b'{"n":' + b"9" * 4301 + b"}",  # nothing PII-like: the fast validate-only path
        b'{"n":-' + b"1" * 5000 + b', "m": "ana@example.es"}',  # a PII candidate: the full parse
    ],
    ids=["fast-path", "scanned"],
)
@pytest.mark.parametrize("chunk", [1 << 20, 7])
def test_an_integer_beyond_pythons_digit_limit_is_a_located_scan_error(line: bytes, chunk: int) -> None:
    data = b'{"ok": 1}\n' + line + b"\n"
    scanner = JsonlScanner(ENGINE, source="up.jsonl")
    with pytest.raises(ScanError) as info:
        for i in range(0, len(data), chunk):
            scanner.feed(data[i : i + chunk])
        scanner.finish()
    err = info.value
    assert err.line == 2 and "record 2 is not accepted: an integer with" in err.message
    assert "9999" not in str(err) and "1111" not in str(err)
