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
        "p.yaml:3: detectors[0].schemes: unknown national id scheme(s) de.passport; known: at.vnr, be.nn, bg.egn, "
        "cz.rc, de.idnr, dk.cpr, ee.ik, es.dni, es.nie, fi.hetu, fr.nir, gb.nhs, gb.nino, gr.amka, hr.oib, ie.pps, "
        "it.codicefiscale, lt.asmens, nl.bsn, no.fodselsnummer, pl.pesel, pt.nif, ro.cnp, se.personnummer, si.emso, "
        "us.ssn, us.ssn.compact",
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
    ("", "p.yaml:1: the policy is empty"),
    ("# only a comment\n\n", "p.yaml:1: the policy is empty"),
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


# --- PyYAML's own exceptions (found by fuzzing): each a located PolicyError, exit 2 in the CLI -------

HOSTILE_YAML = [
    ("name: t\nversion: !!int zz\n", 2, "cannot be read as 'int'"),
    ("name: t\nversion: !!float y\n", 2, "cannot be read as 'float'"),
    ("name: !!float\n", 1, "cannot be read as 'float'"),
    ("name: t\ndetectors: []\nx: !!timestamp nope\n", 3, "cannot be read as 'timestamp'"),
    ("name: t\nx: !!binary 'a'\n", 2, "base64"),
    ("name: t\ndetectors: " + "[" * 500 + "]" * 500 + "\n", 2, "nested more than 64 levels"),
    ("name: t\nx:\n" + "".join("  " * i + "- \n" for i in range(1, 200)), 66, "nested more than 64 levels"),
    ("name: t\ndescription: a\x07b\n", 2, "control character #x0007"),
    ("name: t\n\x00\n", 2, "control character #x0000"),
    ("name: t\nname: u\n", 2, "the key 'name' appears twice"),
    ("name: t\nx: !!python/object:os.system {}\n", 2, "could not determine a constructor"),
    (
        "name: t\na: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n",
        1,
        "expands (through aliases) to more than",
    ),
    ("name: t\n---\nname: u\n", 2, "expected a single document"),
    # found by tests/fuzz/fuzz_policy_loader.py: a mapping tag on a scalar
    ("!!set t\n0\n", 1, "expected a mapping node, but found scalar"),
    ("name: t\nx: !!omap t\n", 2, "expected a sequence"),
]


@pytest.mark.parametrize(("text", "line", "needle"), HOSTILE_YAML)
def test_yaml_constructor_errors_are_located_policy_errors(text: str, line: int, needle: str) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text(text, source="p.yaml")
    assert info.value.message.startswith(f"p.yaml:{line}: not valid YAML: "), info.value.message
    assert needle in info.value.message


def _bastion(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from bastion.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0), capsys.readouterr().err


def test_hostile_policy_files_exit_2_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i, (text, line, _) in enumerate(HOSTILE_YAML):
        p = tmp_path / f"p{i}.yaml"
        p.write_text(text)
        code, err = _bastion(capsys, "policy", "check", str(p))
        assert code == 2, (text[:40], err)
        assert f"{p}:{line}: " in err and "Traceback" not in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, err = _bastion(capsys, "policy", "check", str(empty))
    assert code == 2 and f"{empty}:1: the policy is empty" in err
