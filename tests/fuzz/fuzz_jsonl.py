#!/usr/bin/env python3
"""Fuzz the JSONL framing of uploads (policies/scanner.py JsonlScanner, as gateway/scan.py uses it).

Input: a line limit, a cut-point count and positions, then the upload bytes. The upload is scanned in
one chunk and at the cut points; both must give the same output bytes and summary, or the
same ScanError. Any exception other than a Bastion error (the gateway turns those into 400s) is a crash.

    python tests/fuzz/fuzz_jsonl.py -max_total_time=60 -dict=tests/fuzz/jsonl.dict /tmp/corpus tests/fuzz/corpus/jsonl
"""

from __future__ import annotations

import itertools
import sys

import atheris

# Only the code under test is instrumented (coverage feedback where it matters, a fast start).
with atheris.instrument_imports(include=["bastion.policies.scanner"]):
    from bastion.errors import BastionError
    from bastion.policies import PolicyEngine, load_policy
    from bastion.policies.scanner import JsonlScanner

ENGINE = PolicyEngine(load_policy("pack:eu-gdpr"))
LIMITS = [16 * 1024 * 1024, 64, 700, 8192]  # line limits (bytes): the default, and ones the fuzzer reaches


def outcome(body: bytes, cuts: list[int], max_line: int) -> tuple[object, ...]:
    scanner = JsonlScanner(ENGINE, source="upload", max_line_bytes=max_line)
    edges = [0, *sorted({c for c in cuts if 0 < c < len(body)}), len(body)]
    out = bytearray()
    try:
        for a, b in itertools.pairwise(edges):
            out += scanner.feed(body[a:b])
        out += scanner.finish()
    except BastionError as exc:
        return ("error", type(exc).__name__, str(exc))
    return ("ok", bytes(out), scanner.summary.as_dict())


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    max_line = LIMITS[fdp.ConsumeIntInRange(0, len(LIMITS) - 1)]
    cuts = [fdp.ConsumeIntInRange(0, 700) for _ in range(fdp.ConsumeIntInRange(0, 5))]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    whole = outcome(body, [], max_line)
    chunked = outcome(body, cuts, max_line)
    if chunked != whole:
        raise AssertionError(f"cuts {cuts} change the outcome:\n one chunk: {whole}\n chunked:   {chunked}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
