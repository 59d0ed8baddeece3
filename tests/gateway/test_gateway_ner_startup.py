"""A gateway whose policy has an NER detector loads the models when it starts (the first upload does not
wait on them) and stops the model pool when it stops."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest
from gw_support import start_gateway

from bastion.policies import policy_from_mapping

pytestmark = pytest.mark.skipif(importlib.util.find_spec("spacy") is None, reason="spaCy is not installed ([ner])")


def ruler_pipeline(folder: Path) -> str:
    """A real spaCy pipeline built here, saved like an in-house model (nothing downloads)."""
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "PERSON", "pattern": "Margaret Thompson"}])  # type: ignore[attr-defined]
    nlp.to_disk(folder)
    return str(folder)


def test_models_load_at_start_and_the_pool_stops_with_the_gateway(tmp_path: Path) -> None:
    models = {"en": ruler_pipeline(tmp_path / "en")}
    policy = policy_from_mapping(
        {"name": "t", "detectors": [{"id": "names", "type": "ner", "models": models, "pool": "thread"}]}
    )
    upstreams = {"openai": {"base_url": "http://127.0.0.1:9", "jurisdiction": "US", "auth": {"mode": "passthrough"}}}
    gw, srv = start_gateway(tmp_path / "state", policy, upstreams)
    (det,) = gw.engine.detectors
    try:
        assert det._pool is not None  # type: ignore[attr-defined]  # started before any request
        assert any(t.name.startswith("ner-names") for t in threading.enumerate())
    finally:
        srv.stop()
    assert det._pool is None  # type: ignore[attr-defined]
