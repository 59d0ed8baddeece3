"""The raw-line fast path (a line the pre-filter calls clean is only validated, not scanned) gives the same
output and summary as scanning every record, also for policies with custom regex detectors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from policy_helpers import scan_bytes

from bastion.policies import PolicyEngine, policy_from_mapping
from bastion.policies.detectors.regex import context_free

# Context-free custom patterns, some of which match characters that JSON escapes (quote, backslash,
# newline, slash) or only appear after decoding a \uXXXX escape.
REGEXES = [r"PRJ-[0-9]{2}", r'a"b', r"x\\y", r"q\nq", r"k/k", r"[^ a-z]{3}z", r"é+s", r"(?i)zz@", r"\u2028w"]


def _policy(extra: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "name": "t",
        "detectors": [
            {"id": "email", "type": "email"},
            {"id": "phone", "type": "phone"},
            {"id": "iban", "type": "iban"},
            *extra,
        ],
    }


def _pair(extra: list[dict[str, Any]]) -> tuple[PolicyEngine, PolicyEngine]:
    fast = PolicyEngine(policy_from_mapping(_policy(extra)))
    # every line takes the full path
    slow = PolicyEngine(policy_from_mapping(_policy(extra)), raw_line_fast_path=False, prefilter="re")
    return fast, slow


_REGEX_DETECTORS = [
    {"id": f"r{i}", "type": "regex", "entity": f"CODE{i}", "pattern": p, "action": ["redact", "allow", "block"][i % 3]}
    for i, p in enumerate(REGEXES)
]
FAST, SLOW = _pair(_REGEX_DETECTORS)
_SINGLE = {p: _pair([{"id": "r", "type": "regex", "entity": "C", "pattern": p}])[0] for p in REGEXES}

_pieces = st.sampled_from(
    [
        "PRJ-12", "PRJ-1", 'a"b', "x\\y", "q\nq", "k/k", "ABCz", "éés", "ZZ@", "zz@x.io", "\u2028w", "ana@example.es",
        "+49 30 901820", "DE89 3704 0044 0532 0130 00", "a", "b", "q", "x", "y", "z", "\\", '"', "/", "\n", " ", "é",
        "%40", "&#52;", "&commat;", "&#x31", "anna%40example.es", "4111%201111%201111%201111", "%", "&",
    ]
)  # fmt: skip
_string = st.lists(_pieces | st.text(max_size=4), max_size=8).map("".join)
_value = st.recursive(
    _string | st.integers() | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_string, inner, max_size=3),
    max_leaves=8,
)


def _line(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8")


def test_the_fast_path_is_on_for_context_free_regexes() -> None:
    assert FAST.raw_line_fast_path
    assert not FAST.may_contain('{"t": "plain words"}')
    assert FAST.may_contain('{"t": "PRJ-12"}')
    assert FAST.may_contain('{"t": "no \\\\ code"}')  # any backslash: full path
    raw = '{"t": "plain words"}'
    assert not FAST.may_contain_line(raw, raw.encode())


@pytest.mark.parametrize(
    ("pattern", "text"),
    [("^PRJ", "PRJ-1"), ("PRJ$", "a PRJ"), (r"\bPRJ", "a PRJ"), ("(?<!x)PRJ", "PRJ"), ("PRJ(?=-)", "PRJ-"),
     ("(?m)^x", "x"), (r"a(?:b|\Z)", "a")],
)  # fmt: skip
def test_anchors_and_lookarounds_turn_the_fast_path_off(pattern: str, text: str) -> None:
    assert not context_free(pattern)
    spec = {"id": "r", "type": "regex", "entity": "C", "pattern": pattern}
    engine = PolicyEngine(policy_from_mapping(_policy([spec])))
    assert engine.may_contain('{"t": "plain words"}')
    _, summary = scan_bytes(engine, json.dumps({"t": text}).encode() + b"\n")
    assert summary.findings == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_value, st.booleans()), min_size=1, max_size=6))
def test_same_output_and_summary_with_the_fast_path_on_and_off(records: list[tuple[Any, bool]]) -> None:
    data = b"\n".join(_line(v, a) for v, a in records) + b"\n"
    out_fast, s_fast = scan_bytes(FAST, data)
    out_slow, s_slow = scan_bytes(SLOW, data)
    assert out_fast == out_slow
    assert s_fast.as_dict() == s_slow.as_dict()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_string, st.sampled_from(REGEXES))
def test_a_clean_verdict_means_no_finding_in_the_decoded_string(text: str, pattern: str) -> None:
    fast = _SINGLE[pattern]
    for ascii_only in (False, True):
        raw = json.dumps({text: text}, ensure_ascii=ascii_only)
        if not fast.may_contain(raw) or not fast.may_contain_line(raw, raw.encode()):
            assert not fast.scan_record(json.loads(raw)).findings


_GATE_POLICY = {
    "name": "t",
    "detectors": [
        {"id": "email", "type": "email"},
        {"id": "phone", "type": "phone"},
        {"id": "iban", "type": "iban"},
        {"id": "card", "type": "payment_card"},
        {"id": "nid", "type": "national_id"},
        {"id": "ip", "type": "ip_address", "action": "allow"},
    ],
}
GATED = PolicyEngine(policy_from_mapping(_GATE_POLICY))
UNGATED = PolicyEngine(policy_from_mapping(_GATE_POLICY), kind_gate=False)  # every candidate pass runs

_id_pieces = st.sampled_from(
    [
        "ana@example.es", "a@b", "+49 30 901820", "030 901820", "DE89 3704 0044 0532 0130 00", "DE89",
        "4111 1111 1111 1111", "X2482300W", "12345678Z", "RCCMNL83S18D969H", "fe80::1", "::", "8.8.8.8", "2024",
        "\ud800", "\u00a0", " ", "(", ")", "-", ".", "/", ":", "@", "A", "Z", "0", "9", "é",
        "ana (at) example (dot) es", "[at]", " (AT) ", "[@]", "{dot}", "\u0301", "\u20dd", "u\u0308",
        "x2482300w", "X2482300w", "rccmnl83s18d969h", "ab123456c", "AB 12 34 56 c", "ab 12 34 56 c", "NINO ",
        "anna at example dot com", " at ", " AT ", " dot ", " Dot ", "com", "de", "@ ", "x", "c",
        " one", " four", "eins", " 1111", "call me on zero one seven six double two three four five six seven",
        "O2O 7946 O958", "4lll", "O", "l", "I", "4111*1111*1111*1111", "*", "|", "\u2022",
        "%40", "%20", "&#52;", "&#x31;", "&commat;", "&nbsp;", "anna%40example.es", "%", "+34~887~321~455", "~",
        "GBO4 VFDZ 4956 2553 5285 43", "GB82 WEST l234", "WEST", "Yl979229R", "RCCMNL83Sl8D969H",
        "card 4111\n1111\n1111\n1111", "\t", "\r\n", "+49\t30\t901820",
        "81[.]2[.]69[.]160", "8.8.8(.)8", "tel ", "08~847~00~52", "030*901820", "Tel. 06|12", "[.]", " [dot] ",
        "anna@example[.]com", "@example (.) de", " (punkt) ", " punto ", " arroba ", "[Arobase]", " PUNT ",
        "\u3002", "\uff61", "\\_", "\\.", "\\@", "\\-", "anna\\_berg@example.com",
        "YW5uYUBleGFtcGxlLmNvbQ==", "NDExMSAxMTExIDExMTEgMTExMQ", "aB", "Ab", "=",
    ]
)  # fmt: skip
_id_string = st.lists(_id_pieces | st.text(max_size=3), max_size=10).map("".join)


SCREENED = PolicyEngine(policy_from_mapping(_GATE_POLICY), prefilter="re")  # the gate without Hyperscan


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(_id_string, _id_string, max_size=3), min_size=1, max_size=4))
def test_the_kind_gate_changes_nothing(records: list[dict[str, str]]) -> None:
    assert GATED.kind_gate and SCREENED.kind_gate and not UNGATED.kind_gate
    for i, record in enumerate(records):
        b = UNGATED.scan_record(record, i)
        for gated in (GATED, SCREENED):
            a = gated.scan_record(record, i)
            assert (a.action, a.record, a.findings, a.changed) == (b.action, b.record, b.findings, b.changed)


RE_ONLY = PolicyEngine(policy_from_mapping(_GATE_POLICY), prefilter="re")  # the re pre-filter and its screens

# Digits and capitals with short runs of number separators between them: the shapes the screens look for,
# and near misses (one separator too many, a capital too few); the words of an address written out ("anna at
# example dot com") and characters that Python's IGNORECASE folds to ASCII letters.
_glyph = st.sampled_from(
    [
        "0", "7", "A", "Z", "X", "a", "\u00e0", "+", "(", "@x.de", "\u0301", "\u20dd", "e\u0308",
        "anna", " at ", " AT ", " dot ", " DoT ", "com", "f\u0131", "\u017fe", "O", "l", "I",
        "%20", "%34", "&#52;", "&#x31", "&nbsp;", "&commat;", "~", "|", "\u2022", "[.]", "(dot)", " {.} ",
        "\u3002", "#", "=", "\u00b7", " punkt ", " Punto ", " kropka ", " punt ", " arroba ", "\\.", "\\-", "\\",
        "aB", "cD1", "_", "YW5uYUBleGFtcGxlLmNvbQ==",
    ]
)  # fmt: skip
_gap = st.text(alphabet=" .-/()\u00a0+\t\n\r\u2028", max_size=4)
_shape_string = st.lists(st.tuples(_glyph, _gap).map("".join), max_size=20).map("".join)


@settings(max_examples=300, deadline=None)
@given(_shape_string, st.booleans())
@example("1 - 2 - 3 - 4", False)
@example("+1 - 2 - 3", False)
@example("1\u00a0\u00a0\u00a02\u00a0\u00a0\u00a03\u00a0\u00a0\u00a04", False)
@example("(1)(2)(3)(4)", False)
@example("X1234567-Z", False)
@example("DE89 3704 0044 0532 0130 00", True)
@example("ABCDEF12A34B567C", False)
@example("x2482300w", False)
@example("x2482300-w", False)
@example("abcdef12a34b567c", False)
@example("ab123456c", False)
@example("ab 12 34 56 c", False)
@example("anna at example dot com", False)
@example("anna at example DOT f\u0131", False)
@example("anna at example dot \u017fe", False)
@example("ab 12\u00a034 56 c", False)
@example("O2O 7946 O958", False)
@example("4111*1111*1111*1111", False)
@example("+34~887~321~455", False)
@example("GBO4 VFDZ 4956 2553 5285 43", False)
@example("Yl979229R", False)
@example("card 4111\t1111\t1111\t1111", False)
@example("4111 \r\n 1111", True)
@example("+34 \u2022 981", False)
@example("0/0/0", False)  # digit runs without an odd separator or a look-alike letter: no pass's pattern
@example("0000000", False)
@example("4111 \u2022 1111 \u2022 1111 \u2022 1111", False)
@example("4lll 1lll 1lll 1lll", True)
@example("DE89 3704 0044 0532 0130 0\u03000", False)
@example("\u0301DE89 3704 0044 0532 0130 00", False)
@example("4111%201111%201111%201111", False)
@example("&#52;&#49;&#49;&#49; 1111 1111 1111", True)
@example("81[.]2[.]69[.]160", False)
@example("81 (dot) 2", False)
@example("08 -~ 847", False)
@example("0\u2022\u20220", False)  # two bullets: two separators, six bytes
@example("0 \u00b7\u2028 0", False)
@example("anna at example punkt de", False)
@example("ana arroba empresa PUNTO es", True)
@example("4111\\-1111", False)
@example("YW5uYUBleGFtcGxlLmNvbQ==", False)
@example("aB0Cd", False)
def test_the_byte_shape_screens_change_no_verdict(text: str, ascii_only: bool) -> None:
    raw = json.dumps({"t": text}, ensure_ascii=ascii_only)
    try:
        data = raw.encode("utf-8")
    except UnicodeEncodeError:
        return  # not a line the scanner can get (it decodes valid UTF-8)
    assert RE_ONLY.may_contain_line(raw, data) == RE_ONLY.may_contain(raw)


@pytest.mark.parametrize(
    "value", ["x2482300w", "X2482300w", "x2482300-W", "rccmnl83s18d969h", "ab123456c", "ab 12 34 56 c"]
)
@pytest.mark.parametrize("prefilter", ["re", "auto"])
def test_codes_in_small_letters_pass_every_pre_filter(value: str, prefilter: str) -> None:
    """A letter-led id in small letters: the byte-shape screens (no Hyperscan) and Hyperscan's digit-led
    tails both let its line through to the scan, in a JSONL file as in a record."""
    engine = PolicyEngine(policy_from_mapping(_GATE_POLICY), prefilter=prefilter)  # type: ignore[arg-type]
    line = json.dumps({"messages": [{"role": "user", "content": f"mi NIE/CF/NINO: {value}, grazie"}]})
    assert engine.may_contain_line(line, line.encode())
    out, _ = scan_bytes(engine, (line + "\n").encode())
    assert value not in out.decode() and "[NATIONAL_ID]" in out.decode()
    assert [f.entity for f in engine.scan_record(json.loads(line)).findings] == ["NATIONAL_ID"]


@pytest.mark.parametrize(
    "value",
    [
        "anna at example dot com", "ANNA DOT BERG AT EXAMPLE DOT DE", "anna.berg @ example.com", "a@ example.es",
        "anna . berg @ example . com", "ANA ARROBA EMPRESA PUNTO ES", "ana arroba empresa punto es",
        "anna (at) firma (punkt) de",
    ],
)  # fmt: skip
@pytest.mark.parametrize("prefilter", ["re", "auto"])
def test_addresses_in_words_or_with_a_spaced_at_pass_every_pre_filter(value: str, prefilter: str) -> None:
    """An e-mail address written in words or with a space after its '@': the byte-shape screen (no
    Hyperscan) and Hyperscan's prefix both let its line through, and it is redacted whole."""
    engine = PolicyEngine(policy_from_mapping(_GATE_POLICY), prefilter=prefilter)  # type: ignore[arg-type]
    line = json.dumps({"messages": [{"role": "user", "content": f"write to {value}, thanks"}]})
    assert engine.may_contain_line(line, line.encode())
    out, _ = scan_bytes(engine, (line + "\n").encode())
    assert json.loads(out)["messages"][0]["content"] == "write to [EMAIL], thanks"


def test_the_fast_path_knobs_are_public() -> None:
    policy = policy_from_mapping(_GATE_POLICY)
    plain = PolicyEngine(policy, prefilter="re", kind_gate=False, raw_line_fast_path=False)
    assert not plain.native_prefilter and not plain.kind_gate and not plain.raw_line_fast_path
    assert plain.prefilter_mode == "re"
    clean = '{"t": "plain words"}'
    assert plain.may_contain_line(clean, clean.encode())  # no fast path: every line is scanned
    assert not PolicyEngine(policy, prefilter="re").may_contain_line(clean, clean.encode())
    with pytest.raises(ValueError, match="prefilter must be"):
        PolicyEngine(policy, prefilter="fast")  # type: ignore[arg-type]


def test_hyperscan_required_or_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = policy_from_mapping(_GATE_POLICY)
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="Hyperscan"):
            PolicyEngine(policy, prefilter="hyperscan")
        return
    monkeypatch.setenv("BASTION_NO_HYPERSCAN", "1")  # the environment switch does not override the knob
    engine = PolicyEngine(policy, prefilter="hyperscan")
    assert engine.native_prefilter and engine.kind_gate
    assert not PolicyEngine(policy).native_prefilter  # "auto" follows the environment
