#!/usr/bin/env python3
"""Fuzz the policy engine (policies/engine.py, policies/scanner.py) with pack:eu-gdpr.

Input: UTF-8 text (invalid bytes replaced), used three ways:

* as one string of a record: the Hyperscan path and the pure-``re`` path must give the same decision,
  redacted record and findings (differential), and the redacted record, scanned again, must yield no
  finding of a redact/block rule (re-scan property);
* as the string of a JSONL line: the scanner with every fast path on (Hyperscan / ``re``) and with none
  must give the same output bytes and summary;
* as the raw bytes of a JSON body and of a JSONL upload: a result or a ScanError, never another exception,
  and the same on both paths.

    python tests/fuzz/fuzz_engine.py -max_total_time=60 -dict=tests/fuzz/engine.dict /tmp/corpus \\
        tests/fuzz/corpus/engine
"""

from __future__ import annotations

import json
import sys
from typing import Any

import atheris

with atheris.instrument_imports():
    from bastion.errors import BastionError
    from bastion.policies import JsonlScanner, PolicyEngine, load_policy, scan_json_body

POLICY = load_policy("pack:eu-gdpr")
try:
    NATIVE = PolicyEngine(POLICY, prefilter="hyperscan")
except RuntimeError:  # hyperscan not installed: compare the re path with itself without fast paths
    NATIVE = PolicyEngine(POLICY, prefilter="re", kind_gate=False)
PLAIN = PolicyEngine(POLICY, prefilter="re")
SLOW = PolicyEngine(POLICY, prefilter="re", kind_gate=False, raw_line_fast_path=False)


def _scan(engine: PolicyEngine, data: bytes) -> tuple[str, bytes, dict[str, Any]] | tuple[str, str]:
    scanner = JsonlScanner(engine, source="f.jsonl")
    try:
        out = scanner.feed(data) + scanner.finish()
    except BastionError as exc:
        return ("error", exc.message)
    summary = scanner.summary.as_dict()
    return ("ok", out, summary)


def _body(engine: PolicyEngine, data: bytes) -> tuple[str, Any]:
    try:
        res = scan_json_body(engine, data)
    except BastionError as exc:
        return ("error", exc.message)
    return ("ok", (res.body, res.result.action, res.result.findings))


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    record = {"t": text}

    try:
        b = PLAIN.scan_record(record)
    except BastionError as exc:  # a string holding JSON with duplicate keys or nested too deeply
        for engine in (NATIVE, SLOW):
            try:
                engine.scan_record(record)
            except BastionError as other:
                assert other.message == exc.message, "different errors"
            else:
                raise AssertionError("an error on one path only") from None
        return
    a = NATIVE.scan_record(record)
    c = SLOW.scan_record(record)
    assert (a.action, a.record, a.findings) == (b.action, b.record, b.findings), "hyperscan vs re"
    assert (a.action, a.record, a.findings) == (c.action, c.record, c.findings), "kind gate on vs off"
    again = PLAIN.scan_record(b.record)
    leftover = [(f.entity, f.start, f.end) for f in again.findings if f.action != "allow"]
    assert not leftover, f"re-scan of the redacted output finds {leftover}"

    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
    expected = _scan(SLOW, line)
    assert _scan(NATIVE, line) == expected, "JSONL: hyperscan fast path vs full path"
    assert _scan(PLAIN, line) == expected, "JSONL: re fast path vs full path"

    # (Both with the raw-line fast path: without it, a line without candidates is decoded in full and its
    # duplicate keys refused; with it, such a line is only validated. See policies/json_rules.py.)
    body = _body(PLAIN, data)
    assert _body(NATIVE, data) == body, "JSON body: hyperscan vs re"
    raw = _scan(PLAIN, data)
    assert _scan(NATIVE, data) == raw, "raw JSONL: hyperscan vs re"


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
