"""The optional Hyperscan pre-filter: never says "clean" where the re path would look closer, and the
scanner's output is the same with or without it."""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from policy_helpers import scan_bytes

from bastion.policies import PolicyEngine, load_policy, policy_from_mapping

pytest.importorskip("hyperscan", reason="hyperscan not installed: the pure-Python pre-filter is the only one in use")
if os.environ.get("BASTION_NO_HYPERSCAN"):
    pytest.skip("BASTION_NO_HYPERSCAN is set: only the re pre-filter is in use", allow_module_level=True)

POLICY = {
    "name": "t",
    "detectors": [
        {"id": "email", "type": "email"},
        {"id": "phone", "type": "phone"},
        {"id": "iban", "type": "iban"},
        {"id": "card", "type": "payment_card"},
        {"id": "nid", "type": "national_id"},
        {"id": "ip", "type": "ip_address"},
        {"id": "kw", "type": "keywords", "entity": "CODENAME", "keywords": ["Blue Falcon", "nightjar"]},
    ],
}


def engines() -> tuple[PolicyEngine, PolicyEngine]:
    native = PolicyEngine(policy_from_mapping(POLICY), prefilter="hyperscan")
    plain = PolicyEngine(policy_from_mapping(POLICY), prefilter="re")
    assert native.native_prefilter and not plain.native_prefilter
    return native, plain


NATIVE, PLAIN = engines()

_pieces = st.sampled_from(
    [
        "ana@example.es", "+49 30 901820", "DE89 3704 0044 0532 0130 00", "4111 1111 1111 1111", "X2482300W",
        "RCCMNL83S18D969H", "fe80::1", "8.8.8.8", "2024", "12:30", "blue FALCON", "NIGHTJAR", "\\u0040", "\\/",
        "AB12", "é", "\u00a0", " ", "(", "-", "x", "n\u0131ghtjar", "\u017f", "\u212a",
        "YW5uYUBleGFtcGxlLmNvbQ==", "aB1", "QUFB", "81[.]2[.]69[.]160", "tel 08~847~00~52", "anna\\_b@x.de",
    ]
)  # fmt: skip
_line = st.lists(_pieces | st.text(max_size=6), max_size=12).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_line)
@example("0A000A000A00")  # a run of Base64 characters without its case steps: no candidate either way
@example("QUFBQUFBQUFB" * 8 + "IGFubmFAZXhhbXBsZS5jb20=")
def test_native_says_clean_only_where_re_says_clean(text: str) -> None:
    raw = json.dumps({"t": text}, ensure_ascii=False)
    if PLAIN.may_contain(raw):
        assert NATIVE.may_contain_line(raw, raw.encode("utf-8"))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_line, min_size=1, max_size=6))
def test_same_output_with_and_without_native(texts: list[str]) -> None:
    data = "".join(json.dumps({"t": t}, ensure_ascii=False) + "\n" for t in texts).encode("utf-8")
    out_native, sum_native = scan_bytes(NATIVE, data, [9])
    out_plain, sum_plain = scan_bytes(PLAIN, data, [9])
    assert out_native == out_plain
    assert sum_native.as_dict() == sum_plain.as_dict()


def test_escapes_force_the_full_path() -> None:
    for raw in ('{"a": "x\\u0040y"}', '{"a": "x\\/y"}'):
        assert NATIVE.may_contain_line(raw, raw.encode())
    assert not NATIVE.may_contain_line('{"a": "plain words"}', b'{"a": "plain words"}')


def test_disabled_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_NO_HYPERSCAN", "1")
    assert not PolicyEngine(load_policy("pack:eu-gdpr")).native_prefilter


def test_non_ascii_case_insensitive_keywords_keep_the_re_path() -> None:
    policy = {"name": "t", "detectors": [{"id": "k", "type": "keywords", "entity": "X", "keywords": ["Öl"]}]}
    assert not PolicyEngine(policy_from_mapping(policy)).native_prefilter


@pytest.mark.parametrize("word", ["n\u0131ghtjar", "N\u0130GHTJAR", "blue falcon", "BLUE FALCON"])
def test_case_insensitive_keywords_with_odd_case_folds(word: str) -> None:
    # Python's re.IGNORECASE matches dotless i / dotted I to "i" (and long s to "s", Kelvin sign to "k").
    raw = json.dumps({"t": f"about {word} today"}, ensure_ascii=False)
    assert PLAIN.scan_record(json.loads(raw)).findings
    assert NATIVE.may_contain_line(raw, raw.encode("utf-8"))
    assert scan_bytes(NATIVE, raw.encode() + b"\n") == scan_bytes(PLAIN, raw.encode() + b"\n")
