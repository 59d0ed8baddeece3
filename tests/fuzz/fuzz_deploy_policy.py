#!/usr/bin/env python3
"""Fuzz the deploy-policy loader (provenance/verify/policy.py parse_policy): a policy or a ConfigError.

Input: YAML text (UTF-8, invalid bytes replaced). Failures must be ConfigErrors naming the source and
a line; a policy that loads must evaluate a statement without raising. Anything else is a crash.

    python tests/fuzz/fuzz_deploy_policy.py -max_total_time=60 -dict=tests/fuzz/deploy_policy.dict \\
        /tmp/corpus tests/fuzz/corpus/deploy_policy
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import atheris

# Only the code under test is instrumented (coverage feedback where it matters, a fast start).
with atheris.instrument_imports(include=["bastion.provenance.verify.policy", "bastion.safe_yaml", "yaml"]):
    from bastion.errors import ConfigError
    from bastion.provenance.verify.policy import parse_policy

STATEMENT = {
    "predicate": {
        "base_model": {"digest": {"sha256": "a" * 64}},
        "datasets": [{"name": "train", "role": "train", "digest": {"sha256": "b" * 64}}],
        "overlap": {"train_eval_records": 0},
        "finished_at": "2026-11-01T00:00:00+00:00",
    }
}
IDENTITY = {"type": "key", "fingerprint": "sha256:" + "c" * 64}
NOW = datetime(2026, 11, 29, tzinfo=UTC)


def test_one_input(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    try:
        policy = parse_policy(text, source="d.yaml")
    except ConfigError as exc:
        for line in exc.message.splitlines():
            if not line.startswith("d.yaml:"):
                raise AssertionError(f"error line without file:line: {line!r}") from None
        return
    policy.evaluate(STATEMENT, IDENTITY, NOW)


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
