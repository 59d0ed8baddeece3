"""Policies for the gateway and ``bastion scan``: a YAML policy validated into typed models, detectors
for personal data, the engine that decides allow / redact / block, residency rules, and a streaming
JSONL scanner.

    policy = load_policy("pack:eu-gdpr")
    engine = PolicyEngine(policy)
    scanner = JsonlScanner(engine, source="upload.jsonl")
    out = scanner.feed(chunk) ... + scanner.finish(); scanner.summary.decision
"""

from __future__ import annotations

from bastion.policies.engine import Finding, PolicyEngine, RecordScan, ResidencyDecision
from bastion.policies.errors import ScanError
from bastion.policies.loader import list_packs, load_policy, load_policy_text, policy_from_mapping
from bastion.policies.model import Policy
from bastion.policies.scanner import (
    DEFAULT_MAX_LINE_BYTES,
    JsonlScanner,
    JsonScan,
    RecordDetail,
    ScanSummary,
    parse_json_strict,
    scan_json_body,
    scan_json_value,
)

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "Finding",
    "JsonScan",
    "JsonlScanner",
    "Policy",
    "PolicyEngine",
    "RecordDetail",
    "RecordScan",
    "ResidencyDecision",
    "ScanError",
    "ScanSummary",
    "list_packs",
    "load_policy",
    "load_policy_text",
    "parse_json_strict",
    "policy_from_mapping",
    "scan_json_body",
    "scan_json_value",
]
