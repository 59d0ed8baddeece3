"""The JSON report's shape is stable: pipelines read these keys, so a change here is a format change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion.provenance.report import REPORT_FORMAT, TrustArgs, build_report, evidence_from_run_dir

SHAPE: dict[str, Any] = {
    "format": str,
    "generated_at": str,
    "generator": {"name", "version"},
    "source": {"kind", "path"},
    "run": {
        "run_id",
        "framework",
        "predicate_type",
        "started_at",
        "finished_at",
        "bastion_version",
        "strict",
        "checkpoint",
        "exports",
    },
    "verification": {"ok", "checked_at", "trust", "passed", "failures", "signer", "files_checked", "signature_files"},
    "base_model": {"path_name", "sha256", "files", "source"},
    "tokenizer": {"path_name", "sha256", "files", "source"},  # null when the record has none
    "datasets": [{"name", "role", "sha256", "size", "format", "records", "merkle_root", "split"}],
    "overlap": {"train_eval_records", "computed", "has_train", "has_eval"},
    "curves": dict,
    "metrics": {"final", "global_step", "log_entries", "non_finite"},
    "config": {"sha256", "source", "redacted", "value"},
    "training_arguments": type(None),
    "environment": dict,
    "outputs": {"sha256", "files"},
    "ledger": {
        "path",
        "head",
        "entries",
        "entries_read",
        "verified",
        "problem",
        "problem_line",
        "kinds",
        "first_entry_at",
        "last_entry_at",
        "checkpoints",
    },
    "warnings": {"record", "ledger", "report"},
    "lineage": {"nodes", "edges", "registry"},
    "compliance": [{"framework", "ref", "requirement", "evidence", "sections", "status"}],
}


def _check(value: Any, shape: Any, where: str) -> None:
    if isinstance(shape, set):
        assert isinstance(value, dict) and set(value) == shape, f"{where}: {sorted(value)} != {sorted(shape)}"
    elif isinstance(shape, list):
        assert isinstance(value, list) and value, where
        for i, item in enumerate(value):
            _check(item, shape[0], f"{where}[{i}]")
    else:
        assert isinstance(value, shape), f"{where}: {type(value).__name__}"


def test_report_keys_are_stable(run_dir: Callable[..., Path]) -> None:
    content = build_report(evidence_from_run_dir(run_dir(), TrustArgs()))
    assert content["format"] == REPORT_FORMAT == "bastion-audit-report/v1"
    assert set(content) == set(SHAPE)
    for key, shape in SHAPE.items():
        _check(content[key], shape, key)
    for node in content["lineage"]["nodes"]:
        assert set(node) == {"id", "kind", "label", "sha256", "column", "detail"}
    for edge in content["lineage"]["edges"]:
        assert set(edge) == {"from", "to", "relation"}
    for failure in content["verification"]["failures"]:
        assert set(failure) == {"check", "message", "expected", "found"}
    assert content["curves"] == {"loss": [[1, 1.0], [2, 0.5]]}
