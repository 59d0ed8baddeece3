"""Glue between uploads and the policy scanner (:class:`bastion.policies.JsonlScanner`).

A :class:`ScanSink` receives raw upload bytes (from a multipart file part or from concatenated
Upload parts), feeds them through the streaming JSONL scanner and writes the rewritten (redacted)
records to a :class:`~bastion.gateway.spool.Spool`. Scanner errors become refusals that name the
line / record — never its content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from bastion.errors import BastionError
from bastion.gateway.errors import Refusal
from bastion.gateway.spool import Spool


def _scan_refusal(exc: BastionError) -> Refusal:
    return Refusal(
        400,
        "invalid_upload",
        f"the upload cannot be scanned: {exc.message}",
        hint=exc.hint or "fix the file (one JSON object per line, UTF-8) and upload it again",
    )


class ScanSink:
    """Bytes in -> scanner -> spool. ``write``/``close`` are synchronous (run them off the event loop)."""

    def __init__(self, scanner: Any, spool: Spool, *, checker: Any = None) -> None:
        self.scanner = scanner
        self.spool = spool
        self.checker = checker
        self.bytes_in = 0
        self._input_sha = hashlib.sha256()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self._input_sha.update(data)
        try:
            out = self.scanner.feed(data)
        except BastionError as exc:
            raise _scan_refusal(exc) from None
        self._emit(out)

    def _emit(self, out: bytes) -> None:
        if self.checker is not None:
            self.checker.feed(out)
            self._check()
        self.spool.write(out)

    def _check(self) -> None:
        problem = self.checker.problem if self.checker is not None else None
        if problem is not None:
            record, what = problem
            raise Refusal(
                400,
                "invalid_record",
                f"record {record} of the upload is not a valid fine-tuning record: {what}",
                records=[record],
                hint="fix the record's structure (see the provider's fine-tuning data format) and upload again",
            )

    def close(self) -> None:
        if self.closed:
            return
        try:
            out = self.scanner.finish()
        except BastionError as exc:
            raise _scan_refusal(exc) from None
        self._emit(out)
        if self.checker is not None:
            self.checker.finish()
            self._check()
        self.spool.close_write()
        self.closed = True

    @property
    def input_sha256(self) -> str:
        return self._input_sha.hexdigest()

    @property
    def summary(self) -> Any:
        return self.scanner.summary


def summary_facts(sink: ScanSink) -> dict[str, Any]:
    """What the audit log records about a scan: counts, types, rule ids, digests. No data."""
    s = sink.summary
    return {
        "scan_decision": s.decision,
        "records": s.records,
        "redacted_records": s.redacted_records,
        "blocked_records_total": s.blocked_records_total,
        "blocked_records": list(s.blocked_records),
        "counts": {entity: dict(sorted(per.items())) for entity, per in sorted(s.counts.items())},
        "rule_ids": sorted(s.rule_ids),
        "classification": s.classification,
        "input_bytes": sink.bytes_in,
        "input_sha256": sink.input_sha256,
        "output_bytes": sink.spool.size,
        "output_sha256": sink.spool.sha256,
    }


def entity_types(facts: Mapping[str, Any]) -> list[str]:
    counts = facts.get("counts") or {}
    return sorted(counts) if isinstance(counts, Mapping) else []


def decision_refusal(facts: Mapping[str, Any], what: str) -> Refusal | None:
    """A refusal when the scan says block (or found nothing to train on), else None."""
    if facts["scan_decision"] == "block":
        return Refusal(
            403,
            "policy_block",
            f"the {what} was blocked by the gateway's data policy",
            rule_ids=facts["rule_ids"],
            records=facts["blocked_records"],
            entity_types=entity_types(facts),
            hint="remove or redact the reported entities in those records (bastion scan FILE shows them locally)",
        )
    if facts["records"] == 0:
        return Refusal(
            400,
            "empty_upload",
            f"the {what} contains no records",
            hint="a fine-tuning file needs at least one JSON object per line",
        )
    return None
