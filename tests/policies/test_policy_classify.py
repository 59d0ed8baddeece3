"""Classification raised from findings (policy `classify` rules), and what residency then decides."""

from __future__ import annotations

import pytest

from bastion.policies import PolicyEngine, load_policy, policy_from_mapping
from bastion.policies.classify import Classifier

EU_GDPR = PolicyEngine(load_policy("pack:eu-gdpr"))

CLINICAL_NOTE = (
    "Patientin Anna Schmidt, geb. 12.03.1961, Hauptstraße 12, 10115 Berlin. "
    "Diagnose: Diabetes mellitus Typ 2, HbA1c 8,1 %; Metformin 1000 mg."
)


def _record(text: str) -> dict[str, object]:
    return {"messages": [{"role": "user", "content": text}]}


def test_clinical_note_is_special_category_and_may_not_go_to_a_us_upstream() -> None:
    res = EU_GDPR.scan_record(_record(CLINICAL_NOTE))
    assert res.record["messages"][0]["content"].startswith(  # type: ignore[index]
        "Patientin [PERSON_NAME], geb. [DATE_OF_BIRTH], [STREET_ADDRESS]. Diagnose:"
    )
    assert res.classification == "special"
    decision = EU_GDPR.check_residency("openai", classification=res.classification)
    assert not decision.allowed and decision.jurisdiction == "US"
    assert EU_GDPR.check_residency("mistral", classification=res.classification).allowed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Sehr geehrte Frau Anna Schmidt, Ihr Gehalt wird am Monatsende überwiesen.", "personal"),  # name + money
        ("Mme Claire Dubois, hospitalisée pour une pneumonie, sort demain.", "special"),  # name + health (fr)
        ("Sr. Juan García, diagnóstico: hipertensión.", "special"),
        ("Diagnose: Diabetes Typ 2, keine Namen genannt.", "internal"),  # health words but nobody identified
        ("Frau Anna Schmidt hat morgen frei.", "internal"),  # a name, nothing sensitive: redacted, stays internal
    ],
)
def test_rules_need_an_identifier_and_a_context_word(text: str, expected: str) -> None:
    assert EU_GDPR.scan_record(_record(text)).classification == expected


def test_classifier_rules_directly() -> None:
    policy = policy_from_mapping(
        {
            "name": "t",
            "classify": [
                {
                    "id": "h",
                    "classification": "special",
                    "entities": ["PERSON_NAME"],
                    "keywords": ["diagnos", "blood pressure"],
                }
            ],
        }
    )
    c = Classifier(policy)
    internal, special = policy.rank("internal"), policy.rank("special")
    assert c.rank(internal, {"PERSON_NAME"}, ["the DIAGNOSIS is clear"]) == special
    assert c.rank(internal, {"PERSON_NAME"}, ["high blood\u00a0pressure"]) == special  # any whitespace
    assert c.rank(internal, {"PERSON_NAME"}, ["a prediagnosis"]) == internal  # words start at a word start
    assert c.rank(internal, {"EMAIL"}, ["diagnosis"]) == internal  # not an entity of the rule
    assert c.rank(special, {"PERSON_NAME"}, ["diagnosis"]) == special  # never lowers
