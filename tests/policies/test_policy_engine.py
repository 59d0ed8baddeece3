"""The engine on whole records: every string and key, nested JSON strings, decisions, residency."""

from __future__ import annotations

import copy
import json

import pytest

from bastion.policies import PolicyEngine, load_policy, load_policy_text

POLICY = """
name: test
classifications: [public, internal, personal, special]
default_classification: internal
detectors:
  - {id: email, type: email, action: redact}
  - {id: phone, type: phone, action: redact, regions: [DE, FR, GB]}
  - {id: card, type: payment_card, action: block, classification: special}
  - {id: ip, type: ip_address, action: allow, classification: personal}
  - {id: code, type: regex, entity: PROJECT_CODE, pattern: "PRJ-[0-9]{4}", action: redact, placeholder: "<code>"}
upstreams:
  - {id: openai, jurisdiction: US}
  - {id: mistral, jurisdiction: EU}
residency:
  - {id: personal-eu, classifications: [personal, special], jurisdictions: [EU, EEA]}
  - {id: other-anywhere, classifications: [public, internal], jurisdictions: ["*"]}
"""


@pytest.fixture(scope="module", params=["hyperscan", "re"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    """Every engine test runs on both paths: the Hyperscan kind gate, and the pure-``re`` screens."""
    if request.param == "hyperscan":
        pytest.importorskip("hyperscan", reason="hyperscan is not installed")
    return PolicyEngine(load_policy_text(POLICY, source="test.yaml"), prefilter=request.param)


def test_chat_record_redacted_only_in_matched_spans(engine: PolicyEngine) -> None:
    record = {
        "messages": [
            {"role": "system", "content": "You help."},
            {"role": "user", "content": "Mail ana@example.es or call +44 20 7946 0958 about PRJ-1234."},
            {"role": "assistant", "content": "Done."},
        ]
    }
    original = copy.deepcopy(record)
    res = engine.scan_record(record, 7)
    assert record == original  # the input is not modified
    assert res.action == "redact" and res.changed
    assert res.record["messages"][1]["content"] == "Mail [EMAIL] or call [PHONE] about <code>."
    assert res.record["messages"][0] == original["messages"][0]
    assert [(f.record, f.path, f.entity, f.rule_id, f.action) for f in res.findings] == [
        (7, "messages[1].content", "EMAIL", "email", "redact"),
        (7, "messages[1].content", "PHONE", "phone", "redact"),
        (7, "messages[1].content", "PROJECT_CODE", "code", "redact"),
    ]
    f = res.findings[0]
    assert original["messages"][1]["content"][f.start : f.end] == "ana@example.es"
    assert "ana@example.es" not in json.dumps([x.as_dict() for x in res.findings])


def test_content_parts_tool_calls_and_nested_json_arguments(engine: PolicyEngine) -> None:
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi, I'm bob@example.org"}]},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": json.dumps({"email": "eve\u0040example.net"})},
                    }
                ],
            },
        ]
    }
    res = engine.scan_record(record)
    assert [f.path for f in res.findings] == [
        "messages[0].content[0].text",
        "messages[1].tool_calls[0].function.arguments<json>.email",
    ]
    assert res.record["messages"][0]["content"][0]["text"] == "hi, I'm [EMAIL]"
    assert json.loads(res.record["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"email": "[EMAIL]"}


def test_escaped_text_inside_a_json_string_is_decoded_first(engine: PolicyEngine) -> None:
    # The arguments string itself carries a JSON escape: {"to": "eve\\u0040example.net"}
    args = '{"to": "eve\\u0040example.net"}'
    res = engine.scan_record({"arguments": args})
    assert [f.entity for f in res.findings] == ["EMAIL"]
    assert json.loads(res.record["arguments"]) == {"to": "[EMAIL]"}


def test_preference_record_and_keys(engine: PolicyEngine) -> None:
    record = {
        "input": {"messages": [{"role": "user", "content": "My number is 020 7946 0958"}]},
        "preferred_output": [{"role": "assistant", "content": "Noted."}],
        "non_preferred_output": [{"role": "assistant", "content": "I will text 020 7946 0958"}],
        "metadata": {"ana@example.es": 1, "other": 2},
    }
    res = engine.scan_record(record)
    assert {f.path for f in res.findings} == {
        "input.messages[0].content",
        "non_preferred_output[0].content",
        "metadata.ana@example.es<key>",
    }
    assert res.record["metadata"] == {"[EMAIL]": 1, "other": 2}
    assert list(res.record) == list(record)  # key order kept


def test_block_wins_and_classification(engine: PolicyEngine) -> None:
    res = engine.scan_record({"text": "card 4111 1111 1111 1111 from ana@example.es"})
    assert res.action == "block"
    assert "4111" not in json.dumps(res.record)
    # An allowed IP address stays in the data and makes it personal; redacted data does not count.
    assert engine.scan_record({"t": "from 8.8.8.8"}).classification == "personal"
    assert engine.scan_record({"t": "ana@example.es"}).classification == "internal"
    assert engine.scan_record({"t": "nothing"}).classification == "internal"


def test_unchanged_record_is_the_same_object(engine: PolicyEngine) -> None:
    record = {"messages": [{"role": "user", "content": "no personal data, 12 apples"}], "n": 3, "x": None}
    res = engine.scan_record(record)
    assert res.action == "allow" and not res.changed and res.record is record and res.findings == []


def test_non_object_records_are_scanned(engine: PolicyEngine) -> None:
    assert engine.scan_record("ana@example.es").record == "[EMAIL]"
    assert engine.scan_record(["x", ["ana@example.es"]]).record == ["x", ["[EMAIL]"]]
    assert engine.scan_record(42).action == "allow"


@pytest.mark.parametrize(
    ("upstream", "jurisdiction", "classification", "allowed", "rule"),
    [
        ("openai", None, "personal", False, "personal-eu"),
        ("openai", None, None, True, "other-anywhere"),  # default classification: internal
        ("mistral", None, "special", True, "personal-eu"),
        ("openai", "EU", "personal", False, "personal-eu"),  # the policy's own jurisdiction wins
        ("azure-eu", "EU", "personal", True, "personal-eu"),  # not declared: the caller's jurisdiction
        ("azure-eu", "eu", "personal", True, "personal-eu"),
        ("unknown", None, "public", False, None),  # no jurisdiction known: fail closed
        ("mistral", None, "secret", False, None),  # unknown classification: fail closed
    ],
)
def test_residency(
    engine: PolicyEngine,
    upstream: str,
    jurisdiction: str | None,
    classification: str | None,
    allowed: bool,
    rule: str | None,
) -> None:
    res = engine.check_residency(upstream, jurisdiction, classification)
    assert (res.allowed, res.rule_id) == (allowed, rule)
    assert res.reason


def test_residency_without_rule_for_class_is_denied() -> None:
    text = "name: t\nresidency:\n  - {id: r, classifications: [public], jurisdictions: ['*']}\n"
    engine = PolicyEngine(load_policy_text(text))
    res = engine.check_residency("x", "EU", "personal")
    assert not res.allowed and "no residency rule" in res.reason


def test_gdpr_pack_residency() -> None:
    engine = PolicyEngine(load_policy("pack:eu-gdpr"))
    assert not engine.check_residency("openai", None, "personal").allowed
    assert engine.check_residency("mistral", None, "personal").allowed
    assert engine.check_residency("openai", None, "internal").allowed


def test_redacted_key_holding_nested_json_keeps_one_entry(engine: PolicyEngine) -> None:
    # Regression (found by hypothesis): the key and the JSON document inside its value are both redacted;
    # the rewritten document must land under the new key, not re-create the old (personal) key.
    res = engine.scan_record({"ana@example.es": '{"to": "bob@example.org"}', "keep": 1})
    assert res.record == {"[EMAIL]": json.dumps({"to": "[EMAIL]"}), "keep": 1}


def test_key_collisions_after_redaction_stay_unique(engine: PolicyEngine) -> None:
    res = engine.scan_record({"ana@example.es": 1, "bob@example.org": 2})
    assert res.record == {"[EMAIL]": 1, "[EMAIL]#2": 2}


# UUIDs whose random digit groups read as a phone, a Luhn-valid card or an NHS number (found by chance
# among 20,000 random ones): provider ids, never personal data.
RANDOM_UUIDS_THAT_LOOK_LIKE_NUMBERS = [
    "0d3f3ab5-9eae-4643-9685-fdf044396837",
    "7b740189-1271-47a2-97cb-96ba03b5fbf5",
    "891e5b13-031c-4274-9276-02604a31e8b5",
    "03184567-7a19-418e-9da2-b63877edb40e",
]


@pytest.mark.parametrize("uid", RANDOM_UUIDS_THAT_LOOK_LIKE_NUMBERS)
def test_a_uuid_is_an_id_not_a_number(uid: str) -> None:
    eu = PolicyEngine(load_policy("pack:eu-gdpr"))
    for record in ({"file_id": uid}, {"text": f"job {uid} failed"}, {"id": uid.upper()}):
        assert eu.scan_record(record, 0).findings == []
    # a number written beside it is still read
    scan = eu.scan_record({"text": f"{uid} call +49 151 23456789"}, 0)
    assert [f.entity for f in scan.findings] == ["PHONE"]
    # the canonical shape only: with a group too long or glued to a letter it is not a UUID, and read
    not_uuid = eu.scan_record({"text": "x 45391488-0343-6467-abcd-ef01234567891 y"}, 0)
    assert [f.entity for f in not_uuid.findings] == ["PAYMENT_CARD"]


def test_opaque_pairs_skip_only_that_value_at_that_path() -> None:
    eu = PolicyEngine(load_policy("pack:eu-gdpr"))
    card_like = "file-ab4539148803436467cdef"
    record = {"training_file": card_like, "suffix": card_like}
    scan = eu.scan_record(record, 0, opaque=frozenset({("training_file", card_like)}))
    assert [(f.path, f.entity) for f in scan.findings] == [("suffix", "PAYMENT_CARD")]
    assert scan.record["training_file"] == card_like
    assert eu.scan_record(record, 0, opaque=frozenset({("training_file", "other")})).findings != []
