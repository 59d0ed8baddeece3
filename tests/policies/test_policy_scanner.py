"""Streaming JSONL scanner: chunking anywhere gives identical output, untouched records stay byte-identical,
escaped PII is caught, and bad input fails with a located ScanError that never echoes the data."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_helpers import scan_bytes

from bastion.policies import JsonlScanner, PolicyEngine, ScanError, load_policy


@pytest.fixture(scope="module", params=["hyperscan", "re"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    """Every scanner test runs on both paths: the Hyperscan pre-filter and kind gate, and pure ``re``."""
    if request.param == "hyperscan":
        pytest.importorskip("hyperscan", reason="hyperscan is not installed")
        return PolicyEngine(load_policy("pack:eu-gdpr"), prefilter="hyperscan")
    return PolicyEngine(load_policy("pack:eu-gdpr"), prefilter="re")


PII_RECORDS = [
    {"messages": [{"role": "user", "content": "I'm Zoë, zoë.müller@example.de, +49 30 901820"}]},
    {"messages": [{"role": "user", "content": "IBAN DE89 3704 0044 0532 0130 00 — danke"}]},
    {"input": {"messages": [{"role": "user", "content": "NIR 2 95 10 99 126 111 93"}]}, "preferred_output": []},
    {"messages": [{"role": "user", "content": "Grüße aus München 🎉"}, {"role": "assistant", "content": "Hallo!"}]},
    {"k": ["plain", {"deep": "server 8.8.8.8"}]},
]


def _jsonl(records: list[object], **dumps: object) -> bytes:
    return "".join(json.dumps(r, **dumps) + "\n" for r in records).encode("utf-8")  # type: ignore[arg-type]


def test_redacts_and_passes_clean_lines_byte_identical(engine: PolicyEngine) -> None:
    clean = b'{"messages":[{"role":"user","content":"caf\\u00e9 \\"quoted\\" 12 apples"}] , "n": 1.50}\n'
    data = clean + _jsonl(PII_RECORDS, ensure_ascii=False)
    out, summary = scan_bytes(engine, data)
    lines = out.split(b"\n")
    assert lines[0] + b"\n" == clean  # spacing, escapes and number formatting untouched
    assert (
        json.loads(lines[1])["messages"][0]["content"] == "I'm [PERSON_NAME], [EMAIL], [PHONE]"
    )  # a given name after "I'm"
    assert json.loads(lines[2])["messages"][0]["content"] == "IBAN [IBAN] — danke"
    assert json.loads(lines[3])["input"]["messages"][0]["content"] == "NIR [NATIONAL_ID]"
    assert lines[4] == json.dumps(PII_RECORDS[3], ensure_ascii=False).encode()  # no PII: identical
    assert json.loads(lines[5]) == {"k": ["plain", {"deep": "server [IP_ADDRESS]"}]}
    assert summary.records == 6 and summary.decision == "redact" and summary.redacted_records == 4
    assert summary.entity_counts == {
        "EMAIL": 1,
        "IBAN": 1,
        "IP_ADDRESS": 1,
        "NATIONAL_ID": 1,
        "PHONE": 1,
        "PERSON_NAME": 1,
    }
    assert summary.input_sha256 == hashlib.sha256(data).hexdigest()
    assert summary.output_sha256 == hashlib.sha256(out).hexdigest()
    assert [d.record for d in summary.details] == [2, 3, 4, 6]
    text = json.dumps(summary.as_dict())
    for secret in ("example.de", "901820", "3704", "8.8.8.8"):
        assert secret not in text


def test_unicode_escaped_pii_is_caught(engine: PolicyEngine) -> None:
    data = b'{"text": "mail ana\\u0040example.es or \\u002b49 30 901820"}\n'
    out, summary = scan_bytes(engine, data)
    assert json.loads(out) == {"text": "mail [EMAIL] or [PHONE]"}
    assert summary.entity_counts == {"EMAIL": 1, "PHONE": 1}


def test_escaped_slash_and_all_escapes_are_decoded_before_scanning(engine: PolicyEngine) -> None:
    data = b'{"text": "call 030\\/901820\\nnow"}\n'
    out, _ = scan_bytes(engine, data)
    assert json.loads(out) == {"text": "call [PHONE]\nnow"}


def test_line_endings_bom_and_missing_final_newline(engine: PolicyEngine) -> None:
    data = b'\xef\xbb\xbf{"a": "x"}\r\n{"a": "ana@example.es"}\r\n{"a": "y"}'
    out, summary = scan_bytes(engine, data)
    assert out == b'\xef\xbb\xbf{"a": "x"}\r\n{"a": "[EMAIL]"}\r\n{"a": "y"}'
    assert summary.records == 3


def test_blank_lines_pass_through_and_are_not_records(engine: PolicyEngine) -> None:
    data = b'{"a": 1}\n\n   \n{"a": 2}\n'
    out, summary = scan_bytes(engine, data)
    assert out == data and summary.records == 2 and summary.lines == 4


def test_block_lists_record_numbers(engine: PolicyEngine) -> None:
    data = _jsonl([{"a": "ok"}, {"a": "4111 1111 1111 1111"}, {"a": "ok"}, {"a": "5555555555554444"}])
    out, summary = scan_bytes(engine, data)
    assert summary.decision == "block" and summary.blocked_records == [2, 4]
    assert b"4111" not in out and b"5555" not in out
    assert summary.rule_ids == {"payment-card"}


# -- chunking ---------------------------------------------------------------------------------------

DATA = _jsonl(PII_RECORDS, ensure_ascii=False) + b'{"tail": "no newline, ana@example.es"}'
REFERENCE = scan_bytes(PolicyEngine(load_policy("pack:eu-gdpr"), raw_line_fast_path=False, prefilter="re"), DATA)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=64), max_size=40))
def test_any_chunking_gives_identical_output(engine: PolicyEngine, sizes: list[int]) -> None:
    out, summary = scan_bytes(engine, DATA, sizes)
    assert out == REFERENCE[0]
    assert summary.as_dict() == REFERENCE[1].as_dict()


def test_byte_at_a_time_splits_multibyte_characters(engine: PolicyEngine) -> None:
    out, _ = scan_bytes(engine, DATA, [1] * len(DATA))
    assert out == REFERENCE[0]


# -- property: nothing to redact -> byte-identical; always valid JSONL ------------------------------

_SAMPLES = ["ana@example.es", "+49 30 901820", "4111 1111 1111 1111", "x\u2028y", "8.8.8.8", "a\\u0040b.com"]
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30) | st.sampled_from(
    [*_SAMPLES, '{"e": "b@c.de"}']
)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_json, min_size=1, max_size=5), st.booleans(), st.sampled_from([None, (",", ":")]))
def test_scan_never_corrupts_records(
    engine: PolicyEngine, records: list[object], ascii_only: bool, separators: tuple[str, str] | None
) -> None:
    lines = [json.dumps(r, ensure_ascii=ascii_only, separators=separators).encode() for r in records]
    data = b"\n".join(lines) + b"\n"
    out, summary = scan_bytes(engine, data, [7, 3])
    out_lines = out.split(b"\n")[:-1]
    assert len(out_lines) == len(lines) == summary.records
    for i, (before, after) in enumerate(zip(lines, out_lines, strict=True)):
        scan = engine.scan_record(json.loads(before), i + 1)
        if not scan.changed:
            assert after == before
        else:
            assert json.loads(after) == scan.record
    rescanned, again = scan_bytes(engine, out)
    assert rescanned == out  # redacted output has nothing left to redact
    assert again.redacted_records == 0


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message", "line"),
    [
        (b'{"a": 1}\n{"a": "caf\xe9 ana@example.es"}\n', "t.jsonl:2: not valid UTF-8 (byte 11 of the line)", 2),
        (
            b'{"a": 1}\n{"a": 2}\n{"a": "ana@example.es"\n',
            "t.jsonl:3: record 3 is not valid JSON: Expecting ',' delimiter (column 23)",
            3,
        ),
        (b'{"a": 1}\nana@example.es\n', "t.jsonl:2: record 2 is not valid JSON: Expecting value (column 1)", 2),
        (b'{"a": 1} {"b": 2}\n', "t.jsonl:1: record 1 is not valid JSON: Extra data (column 10)", 1),
        (b'{"a": NaN}\n', "t.jsonl:1: record 1 is not valid JSON: NaN is not a JSON number", 1),
        (b'{"a": "x", "a": "ana@example.es"}\n', "t.jsonl:1: record 1 has the key 'a' twice in one object", 1),
        (b"", "t.jsonl: no records: the input is empty", None),
        (b"\n  \n", "t.jsonl: no records: only blank lines", None),
    ],
)
def test_bad_input(engine: PolicyEngine, data: bytes, message: str, line: int | None) -> None:
    with pytest.raises(ScanError) as info:
        scan_bytes(engine, data)
    assert info.value.message == message
    assert info.value.line == line
    assert "example.es" not in str(info.value)


@pytest.mark.parametrize("sizes", [[], [5], [1] * 40, [30, 30]])
def test_over_long_line_is_refused_without_buffering(engine: PolicyEngine, sizes: list[int]) -> None:
    data = b'{"a": 1}\n{"a": "' + b"x" * 100 + b'"}\n{"a": 2}\n'
    with pytest.raises(ScanError) as info:
        scan_bytes(engine, data, sizes, max_line_bytes=64)
    assert info.value.message == "t.jsonl:2: line is longer than the limit of 64 bytes"
    assert info.value.line == 2
    assert "max_line_bytes" in str(info.value)


def test_over_long_last_line_without_newline(engine: PolicyEngine) -> None:
    scanner = JsonlScanner(engine, source="t.jsonl", max_line_bytes=16)
    scanner.feed(b'{"a": 1}\n')
    with pytest.raises(ScanError, match=r"t\.jsonl:2: line is longer"):
        scanner.feed(b'{"a": "' + b"y" * 20)
    with pytest.raises(ScanError):  # the scanner stays failed
        scanner.feed(b"\n")


def test_nested_json_string_that_does_not_parse_is_scanned_as_text(engine: PolicyEngine) -> None:
    data = b'{"arguments": "{not json, ana@example.es}"}\n'
    out, _ = scan_bytes(engine, data)
    assert json.loads(out) == {"arguments": "{not json, [EMAIL]}"}


@pytest.mark.parametrize("depth", [900, 960, 985, 995, 1100, 5000])
def test_deeply_nested_record_is_redacted_or_refused_never_a_crash(engine: PolicyEngine, depth: int) -> None:
    data = b"[" * depth + b'"ana@example.es"' + b"]" * depth + b"\n"
    try:
        out, _ = scan_bytes(engine, data)
    except ScanError as exc:
        assert exc.line == 1 and "nested too deeply" in exc.message
    else:
        assert b"example.es" not in out and b"[EMAIL]" in out


def test_feed_accepts_bytearray_and_memoryview(engine: PolicyEngine) -> None:
    scanner = JsonlScanner(engine, source="t.jsonl")
    out = scanner.feed(bytearray(b'{"a": "ana@example.es"}\n{"b"'))
    out += scanner.feed(memoryview(b": 1}\n"))
    out += scanner.finish()
    assert out == b'{"a": "[EMAIL]"}\n{"b": 1}\n'
