"""Shared helpers for the policy tests (imported by name: tests have no packages here)."""

from __future__ import annotations

from typing import Any

from bastion.policies import JsonlScanner, PolicyEngine, policy_from_mapping


def engine_for(detector_type: str, **options: Any) -> PolicyEngine:
    """An engine with a single detector of the given type (action redact)."""
    spec = {"id": "d", "type": detector_type, **options}
    return PolicyEngine(policy_from_mapping({"name": "t", "detectors": [spec]}))


def scan_bytes(engine: PolicyEngine, data: bytes, chunks: list[int] | None = None, **kw: Any) -> tuple[bytes, Any]:
    """Feed ``data`` in chunks of the given sizes (then the rest) and return (output, summary)."""
    scanner = JsonlScanner(engine, source="t.jsonl", **kw)
    out = bytearray()
    pos = 0
    for size in chunks or []:
        out += scanner.feed(data[pos : pos + size])
        pos += size
    if pos < len(data):
        out += scanner.feed(data[pos:])
    out += scanner.finish()
    return bytes(out), scanner.summary
