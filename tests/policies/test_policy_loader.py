"""Policy files: bundled packs load; bad policies give exact, located messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import PolicyError
from bastion.policies import PolicyEngine, list_packs, load_policy, load_policy_text

DETECTOR_TYPES = (
    "email, phone, iban, payment_card, national_id, ip_address, regex, keywords, date_of_birth, person_name, "
    "street_address, ner"
)

BAD_POLICIES = [
    (
        "name: t\ndetectors:\n  - id: email\n    type: email\n  - id: phone\n    type: phone\n"
        "  - id: card\n    type: payment_card\n    action: drop\n",
        "p.yaml:9: detectors[2].action: Input should be 'allow', 'redact' or 'block' (got 'drop')",
    ),
    (
        "name: t\ndetectors:\n  - id: x\n    type: passport\n",
        f"p.yaml:3: detectors[0]: unknown detector type 'passport'; expected one of: {DETECTOR_TYPES}",
    ),
    (
        "name: t\ndetectors:\n  - id: x\n",
        f"p.yaml:3: detectors[0]: detector needs a 'type'; one of: {DETECTOR_TYPES}",
    ),
    (
        "name: t\ndetectors:\n  - id: x\n    type: email\n    acton: block\n",
        "p.yaml:5: detectors[0].acton: unknown key (check its spelling)",
    ),
    ("detectors: []\n", "p.yaml:1: name: required key is missing"),
    (
        "name: t\ndetectors:\n  - id: x\n    type: email\n    classification: secret\n",
        "p.yaml:5: detectors[0].classification: unknown classification 'secret'; "
        "declared classifications: public, internal, personal, special",
    ),
    (
        "name: t\ndetectors:\n  - {id: x, type: email}\n  - {id: x, type: iban}\n",
        "p.yaml:4: detectors[1].id: duplicate detector id 'x' (first used at detectors[0])",
    ),
    (
        'name: t\ndetectors:\n  - id: x\n    type: regex\n    entity: CODE\n    pattern: "PRJ-("\n',
        "p.yaml:6: detectors[0].pattern: invalid regular expression: missing ), unterminated subpattern at position 4",
    ),
    (
        'name: t\ndetectors:\n  - {id: x, type: regex, entity: CODE, pattern: "a*"}\n',
        "p.yaml:3: detectors[0].pattern: the regular expression matches the empty string; it would match everywhere",
    ),
    (
        "name: t\ndetectors:\n  - id: x\n    type: phone\n    regions: [DE, XX]\n",
        "p.yaml:5: detectors[0].regions: unknown phone region(s) XX; use ISO 3166 codes such as DE, FR, GB",
    ),
    (
        "name: t\ndetectors:\n  - id: x\n    type: phone\n    regions: [DE, NO]\n",
        "p.yaml:5: detectors[0].regions: a region was read as the boolean false: "
        'YAML reads a bare NO as false; write "NO"',
    ),
    (
        "name: t\ndetectors:\n  - {id: x, type: national_id, schemes: [de.passport]}\n",
        "p.yaml:3: detectors[0].schemes: unknown national id scheme(s) de.passport; known: be.nn, de.idnr, es.dni, "
        "es.nie, fi.hetu, fr.nir, gb.nhs, ie.pps, it.codicefiscale, nl.bsn, pl.pesel, se.personnummer, us.ssn",
    ),
    (
        "name: t\nresidency:\n  - id: r\n    classifications: [personal]\n    jurisdictions: [eu]\n",
        "p.yaml:5: residency[0].jurisdictions[0]: 'eu' is not allowed here: "
        "use upper-case codes such as EU, US, CH, or '*' for anywhere",
    ),
    (
        "name: t\nclassify:\n  - id: h\n    classification: secret\n    entities: [PERSON_NAME]\n    keywords: [x1]\n",
        "p.yaml:4: classify[0].classification: unknown classification 'secret'; "
        "declared classifications: public, internal, personal, special",
    ),
    (
        "name: t\nresidency:\n  - id: r\n    classifications: [personal, secret]\n    jurisdictions: [EU]\n",
        "p.yaml:4: residency[0].classifications[1]: unknown classification 'secret'; "
        "declared classifications: public, internal, personal, special",
    ),
    (
        "name: t\ndefault_classification: public\nclassifications: [internal, personal]\n",
        "p.yaml:2: default_classification: unknown classification 'public'; "
        "declared classifications: internal, personal",
    ),
    (
        "name: t\ndetectors:\n  - id: x\n   type: email\n",
        "p.yaml:4: not valid YAML: expected <block end>, but found '<block mapping start>'",
    ),
    ("- a\n- b\n", "p.yaml:1: the policy must be a mapping (key: value), got a list"),
    ("", "p.yaml: the policy is empty"),
    ("name: t\nversion: 2\n", "p.yaml:2: version: Input should be 1 (got 2)"),
]


@pytest.mark.parametrize(("text", "message"), BAD_POLICIES, ids=[m.split(": ", 2)[1] for _, m in BAD_POLICIES])
def test_bad_policy_exact_message(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="p.yaml")
    assert info.value.message == message
    assert "hint:" in str(info.value) or "YAML" in message or "empty" in message or "mapping" in message


def test_several_problems_are_all_reported() -> None:
    text = "name: t\ndetectors:\n  - {id: x, type: email, action: drop}\nupstreams:\n  - {id: openai}\n"
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="p.yaml")
    assert info.value.message == (
        "p.yaml: 2 problems in the policy\n"
        "  p.yaml:3: detectors[0].action: Input should be 'allow', 'redact' or 'block' (got 'drop')\n"
        "  p.yaml:5: upstreams[0].jurisdiction: required key is missing"
    )


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nope\.yaml: policy file not found"):
        load_policy(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: t\ndescription: \xff\n")
    with pytest.raises(PolicyError, match=r"bad\.yaml:2: policy file is not valid UTF-8"):
        load_policy(bad)
    good = tmp_path / "good.yaml"
    good.write_text("name: mine\ndetectors:\n  - {id: e, type: email}\n")
    assert load_policy(good).source == str(good)
    with pytest.raises(PolicyError, match="unknown policy pack 'nope'") as info:
        load_policy("pack:nope")
    assert "eu-gdpr" in str(info.value)


def test_bundled_packs_load_and_behave() -> None:
    assert {"eu-gdpr", "block-all-pii"} <= set(list_packs())
    for name in list_packs():
        policy = load_policy(f"pack:{name}")
        assert policy.name == name and policy.detectors
    gdpr = PolicyEngine(load_policy("pack:eu-gdpr"))
    strict = PolicyEngine(load_policy("pack:block-all-pii"))
    record = {"messages": [{"role": "user", "content": "I am ana@example.es"}]}
    assert gdpr.scan_record(record).action == "redact"
    assert strict.scan_record(record).action == "block"
    assert gdpr.scan_record({"messages": [{"role": "user", "content": "4111 1111 1111 1111"}]}).action == "block"


def test_policy_defaults() -> None:
    policy = load_policy_text("name: minimal\n")
    assert policy.classifications == ["public", "internal", "personal", "special"]
    assert policy.detectors == [] and policy.residency == []
    engine = PolicyEngine(policy)
    assert engine.scan_record({"a": "ana@example.es"}).action == "allow"
