"""The context gate (names, addresses, dates of birth) never changes what is found: with it on and off,
on the labelled bench corpus and on generated text, the same detectors find things and scans are equal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.policies import PolicyEngine
from bastion.policies.context_gate import ContextGate
from bastion.policies.loader import load_policy

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from pii_corpus import CorpusGenerator

try:
    import hyperscan  # noqa: F401

    MODES = [True, False]
except ImportError:  # pragma: no cover - the re path is still tested
    MODES = [False]


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(load_policy("pack:eu-gdpr"), context_gate=False)


@pytest.fixture(scope="module", params=MODES, ids=lambda n: "hyperscan" if n else "re")
def gate(request: pytest.FixtureRequest, engine: PolicyEngine) -> ContextGate:
    g = ContextGate(engine._on_view, native=request.param)
    assert g.native is request.param
    return g


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _check(gate: ContextGate, text: str) -> None:
    allowed = gate.candidates(text)
    for det in gate.detectors:
        if det not in allowed:
            assert det.find(text) == [], (type(det).__name__, text)


def _corpus(seed: int, n: int) -> list[dict[str, Any]]:
    gen = CorpusGenerator(seed)
    return [gen.record()["record"] for _ in range(n)]


@pytest.mark.parametrize("seed", [1, 7, 23])
def test_gate_only_skips_detectors_that_find_nothing_on_the_corpus(gate: ContextGate, seed: int) -> None:
    skipped = 0
    for record in _corpus(seed, 150):
        line = json.dumps(record, ensure_ascii=False)
        texts = [line, line.replace('\\"', '"').replace("\\n", "\n"), *_strings(record)]
        for text in texts:
            _check(gate, text)
            skipped += len(gate.detectors) - len(gate.candidates(text))
    assert skipped > 0  # the gate does skip work on this corpus


def test_scans_are_identical_with_and_without_the_gate(engine: PolicyEngine) -> None:
    from bastion.policies.scanner import JsonlScanner

    gated = PolicyEngine(load_policy("pack:eu-gdpr"))
    assert gated._context_gate is not None and engine._context_gate is None
    lines = [json.dumps(r, ensure_ascii=False) for seed in (3, 11) for r in _corpus(seed, 120)]
    lines += ['{"messages": [{"role": "user", "content": "Nothing to see here, just Words And More words."}]}']
    data = ("\n".join(lines) + "\n").encode("utf-8")
    outs = []
    for eng in (engine, gated):
        scanner = JsonlScanner(eng, source="corpus.jsonl")
        outs.append(scanner.feed(data) + scanner.finish())
        for line in lines:
            raw = line.encode("utf-8")
            assert eng.may_contain_line(line, raw) == engine.may_contain_line(line, raw)
    assert outs[0] == outs[1]


_PIECES = [
    "Mr", "Mr.", "Dr.", "Frau", "M.", "m.", "Me", "me", "Sra.", "Señora", "Pan", "pani", "name:", "Nom :",
    "my name is", "ich heiße", "je m'appelle", "Regards,", "Mit freundlichen Grüßen", "best", "I am",
    "Anna", "ANNA", "Maria", "Jan", "Müller", "Nowak", "van der", "de la", "del", "d'", "von", "Élodie",
    "Smith", "Rossi", "García", "Dupont", "born", "geboren", "né le", "DOB:", "nato il", "age", "45 years",
    "12.03.1985", "3/4/85", "1985", "12 mars 1985", "March 3, 1985", "Hauptstraße", "rue", "Straat",
    "12", "221B", "Baker Street", "10115 Berlin", "S/N", "s/n", "calle", "Via", "ul.",
    # age phrases and birth words (the Hyperscan gate looks for these, not for date shapes)
    "Alter:", "âgée de", "Jahre alt", "Jahren", "ans", "años", "anni", "jaar", "lat", "år", "anos", "yrs",
    "y/o", "Aged", "edad:", "età:", "leeftijd:", "wiek:", "ålder:", "idade:", "D.O.B.", "geb.", "ur.",
    "Geburtsdatum", "född", "Urodziłem", "nací", "Data de nascimento", "j.", "jährige", "45", "7",
    # address anchors (street-type words and suffixes before a number)
    "Weg", "platz", "Kade", "Avenue", "Str.", "straße", "gatan", "nr.", "Nr ", "Lane", "Rd",
]  # fmt: skip
_PIECES += [
    " ", "  ", "\t", "\n", ",", "!", ".", "-", "'", "’", "_", "x", "İ", "ı", "ſ", "\u00a0", "\u0085", "é", "ä",
]  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES) | st.text(max_size=4), max_size=14))
def test_gate_only_skips_detectors_that_find_nothing_on_generated_text(parts: list[str]) -> None:
    text = "".join(parts)
    for g in _GATES:
        _check(g, text)


_ENGINE = PolicyEngine(load_policy("pack:eu-gdpr"), context_gate=False)
_GATES = [ContextGate(_ENGINE._on_view, native=n) for n in MODES]


_AGE_PHRASES = [
    "45 years old", "45 years", "45-year-old", "45 yrs", "45 y/o", "45 Jahre alt", "45 Jahren", "45 J.",
    "45-jährige", "45 ans", "45 años", "45 anni", "45 jaar", "45 lat", "45 år", "45 anos", "aged 45", "Alter: 45",
    "âgée de 45", "edad: 45", "età: 45", "leeftijd: 45", "wiek: 45", "ålder: 45", "idade: 45",
]  # fmt: skip


@pytest.mark.parametrize("phrase", _AGE_PHRASES)
def test_every_age_phrase_opens_the_gate_for_dates_of_birth(gate: ContextGate, phrase: str) -> None:
    # each branch of dob._AGE_PATTERN, with no birth word: the date is found only through the age phrase
    text = f"Patient X, {phrase}, 12.03.1979, stable."
    dob = next(d for d in gate.detectors if type(d).__name__ == "DateOfBirthDetector")
    assert dob.find(text) != []
    assert dob in gate.candidates(text)


@pytest.mark.parametrize(
    "text",
    [
        "dear mr Smith",  # "dear" is followed by a small letter; "mr" right after it still counts
        "Dear  Mr\tSmith",
        "NAME: Anna",
        "MY NAME IS Anna",  # a phrase of several words, with any whitespace between
        "my  name\tis Anna",
        "ich heiße Anna",
        "Sehr geehrte Frau Müller",
        "chère Mme Élodie",
    ],
)
def test_a_context_word_in_any_case_before_a_capital_opens_the_gate_for_names(gate: ContextGate, text: str) -> None:
    names = next(d for d in gate.detectors if type(d).__name__ == "PersonNameDetector")
    assert names.find(text) != []
    assert names in gate.candidates(text)
