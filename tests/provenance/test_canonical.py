"""RFC 8785 canonical JSON: the basis of record, config and ledger digests."""

from __future__ import annotations

import enum
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.provenance.canonical import canonical_digest, canonical_json, es6_number


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


# --- the fast encoder is rfc8785, byte for byte --------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # beyond ±(2**53 - 1) too: both must refuse
    | st.floats()  # NaN, infinities, -0.0, subnormals, every exponent
    | st.floats(min_value=1e-8, max_value=1e22)  # around the ES6 fixed/exponent boundaries
    | st.sampled_from([1e-7, 1e-6, 1e20, 1e21, 1e16, 1e15, 5e-05, 4.9e-05, 0.1, 1.0, -0.0, 333333333.33333329])
    | st.text()  # lone surrogates and astral characters included
    | st.text(alphabet=st.sampled_from(["a", "\x00", "\x1f", "\x7f", '"', "\\", "\ud800", "\ufb33", "\U0001f600"]))
)
_keys = st.text(max_size=4) | st.text(alphabet=st.sampled_from(["a", "\ue000", "\uffff", "\U00010000", "\ud83d"]))


def _outcome(fn: Callable[[Any], bytes], value: Any) -> bytes | type[BaseException]:
    try:
        return fn(value)
    except Exception as exc:
        return type(exc)


@settings(deadline=None, max_examples=400)
@given(
    st.recursive(
        _scalars,
        lambda c: st.lists(c, max_size=4) | st.lists(c, max_size=3).map(tuple) | st.dictionaries(_keys, c, max_size=4),
        max_leaves=20,
    )
)
def test_fast_path_is_byte_identical_to_rfc8785(value: Any) -> None:
    assert _outcome(canonical_json, value) == _outcome(rfc8785.dumps, value)


@settings(deadline=None, max_examples=2000)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_es6_number_matches_rfc8785(f: float) -> None:
    assert es6_number(f).encode() == rfc8785.dumps(f)


class _Level(enum.IntEnum):
    LOW = 1


class _Tag(enum.StrEnum):
    A = "a"


@pytest.mark.parametrize(
    "value",
    [
        {"e": _Level.LOW, "t": True, "s": _Tag.A},  # subclasses go to rfc8785, which coerces them
        OrderedDict(b=1, a=[2.5, (3,)]),
        {"\U0001f600": 1, "\ufb33": 2, "a": {"\U00010000": 0, "\uffff": 1}},  # UTF-16 order differs
        {1: "x"},
        {"a": 1, 2: "mixed key types"},
        {"x": object()},
        {"s": "lone \ud800 surrogate"},
        [2**53 - 1, -(2**53) + 1, 2**53],
    ],
)
def test_values_outside_the_fast_path_behave_as_rfc8785(value: Any) -> None:
    assert _outcome(canonical_json, value) == _outcome(rfc8785.dumps, value)


def test_deep_nesting_behaves_as_rfc8785() -> None:
    value: Any = 1
    for _ in range(50):
        value = {"k": [value]}
    assert canonical_json(value) == rfc8785.dumps(value)


@pytest.mark.parametrize("exponent", range(-25, 26))
def test_es6_number_at_every_decimal_exponent(exponent: int) -> None:
    for mantissa in (1.0, 1.5, 4.9, 9.999999999999998, 1.2345678901234567):
        for f in (mantissa * 10.0**exponent, -mantissa * 10.0**exponent):
            assert es6_number(f).encode() == rfc8785.dumps(f), f
