"""Helpers for the detector tables (imported by name: tests have no packages here)."""

from __future__ import annotations

from typing import Any

from bastion.policies import PolicyEngine, policy_from_mapping


def engine_for(detector_type: str, **options: Any) -> PolicyEngine:
    """An engine with a single detector of the given type (action redact)."""
    spec = {"id": "d", "type": detector_type, **options}
    return PolicyEngine(policy_from_mapping({"name": "t", "detectors": [spec]}))


def found(engine: PolicyEngine, text: str) -> list[tuple[str, str]]:
    """(entity, matched text) of every hit in ``text``."""
    return [(h.detector.entity, text[h.start : h.end]) for h in engine.find(text)]
