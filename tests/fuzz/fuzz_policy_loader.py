#!/usr/bin/env python3
"""Fuzz the gateway/scan policy loader (policies/loader.py): a policy or a located PolicyError.

Input: YAML text (UTF-8, invalid bytes replaced). Every failure must be a PolicyError whose message
starts with the source name and a line number; any other exception is a crash. A policy that loads
must build a PolicyEngine that scans a record.

    python tests/fuzz/fuzz_policy_loader.py -max_total_time=60 -dict=tests/fuzz/policy_loader.dict \\
        /tmp/corpus tests/fuzz/corpus/policy_loader
"""

from __future__ import annotations

import re
import sys

import atheris

# Only the code under test is instrumented (coverage feedback where it matters, a fast start).
with atheris.instrument_imports(
    include=["bastion.policies.loader", "bastion.policies.model", "bastion.safe_yaml", "yaml"]
):
    from bastion.errors import PolicyError
    from bastion.policies import PolicyEngine, load_policy_text
    from bastion.safe_yaml import load_yaml  # noqa: F401 - instrumented: the loader goes through it

RECORD = "ana@example.es +49 30 901820 DE89370400440532013000 4111 1111 1111 1111 10.0.0.1 secret-project"
LOCATED = re.compile(r"^p\.yaml(:\d+)?: ")


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        policy = load_policy_text(text, source="p.yaml")
    except PolicyError as exc:
        if not LOCATED.match(exc.message):
            raise AssertionError(f"error without the file: {exc.message!r}") from None
        if exc.message.startswith("p.yaml: ") and "problems in the policy" not in exc.message:
            raise AssertionError(f"error without a line: {exc.message!r}") from None
        return
    PolicyEngine(policy).scan_record({"messages": [{"role": "user", "content": RECORD}]})


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
