"""The JSON rules (issue 8 part 2, issue 16 part 3) for JSONL records and single JSON bodies: numbers are
scanned as their digits, JSON inside strings is decoded to a bound (deeper: refused), duplicate keys are
refused at every level, over-long integers and non-finite numbers are refused with a clean ScanError."""

from __future__ import annotations

import json

import pytest
from policy_helpers import scan_bytes

from bastion.policies import (
    PolicyEngine,
    ScanError,
    load_policy,
    parse_json_strict,
    scan_json_body,
    scan_json_value,
)
from bastion.policies.json_rules import MAX_INT_DIGITS, MAX_NESTED_JSON_DEPTH


@pytest.fixture(scope="module", params=["hyperscan", "re"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    if request.param == "hyperscan":
        pytest.importorskip("hyperscan", reason="hyperscan is not installed")
    return PolicyEngine(load_policy("pack:eu-gdpr"), prefilter=request.param)


# -- numbers ----------------------------------------------------------------------------------------

NUMBER_ROWS = [
    (b'{"phone": 4915123456789}', b'{"phone": "[PHONE]"}'),
    (b'{"phone": 4915123456789.0}', b'{"phone": "[PHONE]"}'),
    (b'{"a": [1, 4111111111111111, true]}', b'{"a": [1, "[PAYMENT_CARD]", true]}'),
    (b'{"id": 36574261809}', b'{"id": "[NATIONAL_ID]"}'),
    (b"4915123456789", b'"[PHONE]"'),
]


@pytest.mark.parametrize(("body", "expected"), NUMBER_ROWS)
def test_json_numbers_are_scanned_as_their_digits(engine: PolicyEngine, body: bytes, expected: bytes) -> None:
    res = scan_json_body(engine, body)
    assert res.changed and res.body == expected
    json.loads(res.body)  # valid JSON


@pytest.mark.parametrize(
    "body", [b'{"seed": 42, "lr": 0.0001, "n": -3, "flag": true, "t": 1e10}', b"[0, 1.5, null]", b"12345"]
)
def test_ordinary_numbers_are_left_alone(engine: PolicyEngine, body: bytes) -> None:
    res = scan_json_body(engine, body)
    assert not res.changed and res.body == body and res.action == "allow"


def test_jsonl_numbers_too(engine: PolicyEngine) -> None:
    out, summary = scan_bytes(engine, b'{"phone": 4915123456789}\n{"phone": 4.915123456789e12}\n')
    assert out == b'{"phone": "[PHONE]"}\n{"phone": "[PHONE]"}\n'
    assert summary.entity_counts == {"PHONE": 2}


TOO_LONG = "9" * (MAX_INT_DIGITS + 1)
REFUSED_NUMBERS = [
    ("5" * 5000, "an integer with 5000 digits"),
    ("4" * 4301, "an integer with 4301 digits"),
    ("-" + TOO_LONG, f"an integer with {MAX_INT_DIGITS + 1} digits"),
    ("1e999", "too large to represent"),
    ("1e400", "too large to represent"),
    ("-1e400", "too large to represent"),
    ("1" * 400 + ".5", "too large to represent"),
    ("NaN", "NaN is not a JSON number"),
    ("Infinity", "Infinity is not a JSON number"),
    ("-Infinity", "-Infinity is not a JSON number"),
]


@pytest.mark.parametrize(("number", "why"), REFUSED_NUMBERS, ids=[w for _, w in REFUSED_NUMBERS])
def test_refused_numbers_in_a_body(engine: PolicyEngine, number: str, why: str) -> None:
    body = f'{{"a": "ana@example.es", "n": {number}}}'.encode()
    with pytest.raises(ScanError) as info:
        scan_json_body(engine, body)
    assert why in info.value.message
    assert "ana@" not in str(info.value)
    if number[-1].isdigit():
        assert number not in str(info.value)  # (NaN / Infinity are named: they are the problem)


@pytest.mark.parametrize(("number", "why"), REFUSED_NUMBERS, ids=[w for _, w in REFUSED_NUMBERS])
@pytest.mark.parametrize("pii", [True, False], ids=["full-path", "fast-path"])
def test_refused_numbers_in_jsonl(engine: PolicyEngine, number: str, why: str, pii: bool) -> None:
    text = "ana@example.es" if pii else "plain"
    data = f'{{"a": 1}}\n{{"a": "{text}", "n": [{number}]}}\n'.encode()
    with pytest.raises(ScanError) as info:
        scan_bytes(engine, data)
    assert info.value.line == 2 and why in info.value.message
    assert info.value.message.startswith("t.jsonl:2: record 2 ")


@pytest.mark.parametrize("number", ["1e400", "7" * 4301, "NaN", "-Infinity"])
def test_a_json_string_with_a_refused_number_is_scanned_as_text(engine: PolicyEngine, number: str) -> None:
    # Not JSON that could be re-serialized: the string stays text, and is scanned as text (found by the
    # fuzzer: a chat message "[NaN]" must not refuse the upload).
    inner = json.dumps({"args": f'{{"x": {number}, "to": "ana@example.es"}}'})
    res = scan_json_body(engine, inner)
    assert json.loads(res.body) == {"args": f'{{"x": {number}, "to": "[EMAIL]"}}'}
    out, _ = scan_bytes(engine, b'{"t": "[NaN]"}\n')
    assert out == b'{"t": "[NaN]"}\n'


def test_the_longest_integer_accepted() -> None:
    assert parse_json_strict("9" * MAX_INT_DIGITS) == int("9" * MAX_INT_DIGITS)


# -- duplicate keys ---------------------------------------------------------------------------------

DUPLICATES = [
    '{"a": 1, "a": 2, "m": "ana@example.es"}',
    '{"x": {"a": "ana@example.es", "a": "clean"}}',
    '[{"k": 1}, {"k": 1, "k": "+49 30 901820"}]',
    json.dumps({"arguments": '{"to": "x", "to": "ana@example.es"}'}),
    json.dumps({"arguments": '{"to": "x", "to": "ana\\u0040example.es"}'}),
    json.dumps({"a": json.dumps({"b": '{"c": "4111 1111 1111 1111", "c": 2}'})}),
]


@pytest.mark.parametrize("body", DUPLICATES)
def test_duplicate_keys_are_refused_at_every_level(engine: PolicyEngine, body: str) -> None:
    with pytest.raises(ScanError, match="twice in one object"):
        scan_json_body(engine, body.encode())
    with pytest.raises(ScanError, match="twice in one object") as info:
        scan_bytes(engine, b'{"ok": 1}\n' + body.encode() + b"\n")
    assert info.value.line == 2


@pytest.mark.parametrize("body", ['{"a": 1, "a": 2}', json.dumps({"a": '{"c": 1, "c": 2}'})])
def test_duplicate_keys_without_any_candidate(engine: PolicyEngine, body: str) -> None:
    # A request body is always decoded in full: refused.
    with pytest.raises(ScanError, match="twice in one object"):
        scan_json_body(engine, body.encode())
    # A JSONL line without a single candidate (at any nesting level) takes the raw-line fast path, which
    # does not decode keys: it goes out byte-identical, and every copy of every key was seen clean.
    out, summary = scan_bytes(engine, body.encode() + b"\n")
    assert out == body.encode() + b"\n" and summary.findings == 0


def test_a_pii_looking_duplicate_key_is_not_echoed(engine: PolicyEngine) -> None:
    with pytest.raises(ScanError) as info:
        scan_json_body(engine, b'{"ana@example.es": 1, "ana@example.es": 2}')
    assert "ana" not in str(info.value)


# -- JSON inside strings ------------------------------------------------------------------------------


def _nest(value: object, levels: int, pad: str = "") -> object:
    for _ in range(levels):
        value = {"inner": pad + json.dumps(value) + pad}
    return value


@pytest.mark.parametrize("pad", ["", " ", "\n\t "])
@pytest.mark.parametrize("levels", [1, 2, 3, MAX_NESTED_JSON_DEPTH])
def test_nested_json_strings_are_decoded_to_the_bound(engine: PolicyEngine, levels: int, pad: str) -> None:
    # Inside the innermost document the address is \u-escaped: only decoding finds it.
    record = _nest({"to": b"ana\\u0040example.es".decode("unicode_escape")}, levels, pad)
    res = scan_json_value(engine, record)
    assert res.action == "redact" and [f.entity for f in res.findings] == ["EMAIL"]
    assert "ana" not in json.dumps(res.record) and "[EMAIL]" in json.dumps(res.record)
    value = res.record
    for _ in range(levels):
        value = json.loads(value["inner"])
    assert value == {"to": "[EMAIL]"}


def test_nesting_beyond_the_bound_is_refused_never_passed_unscanned(engine: PolicyEngine) -> None:
    record = _nest({"to": "call 030 901820"}, MAX_NESTED_JSON_DEPTH + 1)
    with pytest.raises(ScanError, match="nested more than"):
        scan_json_value(engine, record)
    with pytest.raises(ScanError, match="nested more than") as info:
        scan_bytes(engine, json.dumps(record).encode() + b"\n")
    assert info.value.line == 1


def test_a_json_string_literal_inside_a_string_is_decoded(engine: PolicyEngine) -> None:
    res = scan_json_value(engine, {"q": json.dumps("mail ana\u0040example.es")})
    assert res.record == {"q": '"mail [EMAIL]"'}


# -- bodies -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "is not valid JSON"),
        (b'{"a": 1} x', "is not valid JSON: Extra data"),
        (b'\xef\xbb\xbf{"a": 1}', "byte order mark"),
        (b'{"a": "\xff"}', "not valid UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_bad_bodies_are_clean_errors(engine: PolicyEngine, body: bytes, message: str) -> None:
    with pytest.raises(ScanError) as info:
        scan_json_body(engine, body, source="request body")
    assert message in info.value.message and info.value.message.startswith("request body: ")


def test_unchanged_body_is_forwarded_byte_identical(engine: PolicyEngine) -> None:
    body = b'{ "model" : "gpt-4o-mini",\n "suffix": "run-7" }'
    res = scan_json_body(engine, body)
    assert res.body == body and not res.changed


def test_scan_json_value_leaves_its_input_alone(engine: PolicyEngine) -> None:
    value = {"phone": 4915123456789, "deep": [{"m": "ana@example.es"}]}
    before = json.dumps(value)
    res = scan_json_value(engine, value)
    assert json.dumps(value) == before
    assert res.record == {"phone": "[PHONE]", "deep": [{"m": "[EMAIL]"}]}
