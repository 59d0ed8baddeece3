"""Canonical JSON (RFC 8785) and the digests built on it.

``canonical_json`` writes the common JSON types itself, several times faster than ``rfc8785``
(which the ledger pays on every entry), and hands everything else to ``rfc8785.dumps``, so the
output is always byte-identical to ``rfc8785.dumps`` and the same values are refused with the same
errors. The fast path covers exact ``dict``/``list``/``tuple``/``str``/``int``/``float``/``bool``/
``None``; it falls back to ``rfc8785`` for subclasses and other types, integers beyond ±(2**53 - 1),
NaN and infinities, lone surrogates, and objects with a key outside the Basic Multilingual Plane
(RFC 8785 sorts keys by UTF-16 code units, Python by code points; the two orders agree within the
BMP). Equivalence is property-tested against ``rfc8785.dumps`` in tests/provenance/test_canonical.py.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from json.encoder import encode_basestring  # the C escaper when available; same escapes as RFC 8785
from typing import Any

import rfc8785

_MAX_SAFE_INT = 2**53 - 1
_BMP_MAX = "\uffff"


class _Fallback(Exception):
    """The value needs ``rfc8785`` itself (to be exact, or to word the error)."""


def es6_number(value: float) -> str:
    """A finite float in ECMAScript ``Number.prototype.toString`` form, as RFC 8785 section 3.2.2.3 writes it.

    Python's ``repr`` and ECMAScript choose the same shortest round-tripping digits; only the layout
    differs (``1.0`` vs ``1``, ``5e-05`` vs ``0.00005``, ``1e+16`` vs ``10000000000000000``).
    """
    if value == 0:
        return "0"  # also -0.0
    if value < 0:
        return "-" + es6_number(-value)
    r = float.__repr__(value)
    if "e" not in r:  # 1e-4 <= value < 1e16: fixed notation in both
        return r[:-2] if r.endswith(".0") else r
    mantissa, _, exp = r.partition("e")
    digits = mantissa.replace(".", "")
    k, n = len(digits), int(exp) + 1  # value = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    return digits[0] + ("." + digits[1:] if k > 1 else "") + ("e+" if e > 0 else "e-") + str(abs(e))


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise _Fallback
    r = float.__repr__(value)
    # Most floats (1e-4 <= |x| < 1e16 with a fraction) are written the same way by both; -0.0 ends in ".0".
    return es6_number(value) if "e" in r or r.endswith(".0") else r


def _encode(value: Any, out: Callable[[str], None]) -> None:
    t = type(value)
    if t is str:
        out(encode_basestring(value))
    elif t is float:
        out(_float(value))
    elif t is int:
        if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            raise _Fallback
        out(int.__repr__(value))
    elif t is dict:
        if not value:
            out("{}")
            return
        sep = "{"
        for key in sorted(value):  # TypeError for mixed key types: rfc8785 words that
            if type(key) is not str or (not key.isascii() and max(key) > _BMP_MAX):
                raise _Fallback
            out(sep + encode_basestring(key) + ":")
            item = value[key]
            if type(item) is float:  # the common leaf, inline (the ledger's metrics)
                out(_float(item))
            else:
                _encode(item, out)
            sep = ","
        out("}")
    elif t is list or t is tuple:
        if not value:
            out("[]")
            return
        sep = "["
        for item in value:
            out(sep)
            _encode(item, out)
            sep = ","
        out("]")
    elif value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    else:
        raise _Fallback


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` as RFC 8785 canonical JSON (UTF-8 bytes).

    Raises ``rfc8785.CanonicalizationError`` (a ``ValueError``) for values JSON cannot represent
    exactly, such as NaN or integers beyond IEEE-754 double precision.
    """
    parts: list[str] = []
    try:
        _encode(value, parts.append)
        return "".join(parts).encode("utf-8")
    except (_Fallback, TypeError, UnicodeEncodeError, RecursionError):
        return rfc8785.dumps(value)


def canonical_digest(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON form of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
