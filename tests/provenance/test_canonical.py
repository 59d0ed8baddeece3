"""RFC 8785 canonical JSON: the basis of record, config and ledger digests."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from bastion.provenance.canonical import canonical_digest, canonical_json
from hypothesis import given, settings
from hypothesis import strategies as st


def test_sorted_keys_no_whitespace_utf8() -> None:
    assert canonical_json({"b": [1, 2], "a": "é", "c": {"y": None, "x": True}}) == (
        '{"a":"é","b":[1,2],"c":{"x":true,"y":null}}'.encode()
    )


def test_rfc8785_number_and_string_forms() -> None:
    # Examples from RFC 8785 section 3.2.2.3 / appendix B.
    assert canonical_json([1.0, 1e21, 1e-7, 0.1, -0.0, 333333333.33333329]) == b"[1,1e+21,1e-7,0.1,0,333333333.3333333]"
    assert canonical_json('\u20ac$\u000f\nA\'B"\\\\"/') == b'"\xe2\x82\xac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'
    # Keys are sorted by UTF-16 code units, not by code points.
    assert canonical_json({"\U0001f600": 1, "\ufb33": 2}) == '{"\U0001f600":1,"\ufb33":2}'.encode()


def test_digest_independent_of_input_formatting() -> None:
    a = json.loads('{"messages":[{"role":"user","content":"caf\\u00e9"}]}')
    b = json.loads('{ "messages" : [ { "content" : "café", "role" : "user" } ] }')
    assert canonical_digest(a) == canonical_digest(b) == hashlib.sha256(canonical_json(a)).hexdigest()
    assert canonical_digest({"x": 1}) != canonical_digest({"x": 2})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"x": float("-inf")}, 2**53 + 1, {1: "int key"}])
def test_values_without_an_exact_json_form_are_refused(bad: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json(bad)


@settings(deadline=None)  # timing on a shared machine is not what is tested
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
        max_leaves=10,
    )
)
def test_canonical_json_round_trips(value: Any) -> None:
    out = canonical_json(value)
    assert json.loads(out) == value
    assert canonical_json(json.loads(out)) == out
