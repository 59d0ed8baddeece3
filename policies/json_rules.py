"""The JSON rules every scanned document follows (JSONL records, request bodies, JSON inside strings).

* Duplicate keys are refused at every level: readers keep different copies, so the copy we scan might not
  be the copy the upstream reads.
* ``NaN``, ``Infinity`` and numbers that overflow to infinity (``1e400``) are refused: they are not JSON,
  and a redacted copy would be serialized as ``Infinity`` (invalid JSON forwarded).
* Integers longer than :data:`MAX_INT_DIGITS` digits are refused (Python refuses above 4,300 digits
  anyway, with a ``ValueError`` that must not surface as a crash).
* Strings that hold JSON (objects, arrays or a JSON string, whitespace around allowed) are decoded and
  scanned inside, to :data:`MAX_NESTED_JSON_DEPTH` levels; deeper nesting is refused, never passed unscanned;
  duplicate keys inside are refused; a refused number inside makes the string text (scanned as text).

Errors are :class:`~bastion.policies.errors.ScanError` (or the private exceptions below, which the scanner
turns into one that names the line); no message contains the offending value.
"""

from __future__ import annotations

import json
import math
from typing import Any

from bastion.policies.errors import ScanError

MAX_INT_DIGITS = 1000
MAX_NESTED_JSON_DEPTH = 8


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__("duplicate key")
        # Keys are usually field names; still, never echo a long or PII-looking key.
        ok = len(key) <= 40 and key.isprintable() and "@" not in key and sum(c.isdigit() for c in key) < 4
        self.key_repr = repr(key) if ok else "(a key not shown)"


class BadNumber(ValueError):
    """A number the rules refuse; ``args[0]`` says which kind (never the number itself)."""


class NotJson(BadNumber):
    """``NaN``, ``Infinity`` or ``-Infinity``: accepted by Python's decoder, not JSON."""


class NeedsScan(Exception):
    """Raised by the validate-only decoder: the line holds a number whose text differs from its digits
    as scanned (exponent form), so it must take the full path."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise DuplicateKey(k)
            seen.add(k)
    return out


def _reject_constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON number")


def _parse_int(text: str) -> int:
    digits = len(text) - (text[0] == "-")
    if digits > MAX_INT_DIGITS:
        raise BadNumber(f"an integer with {digits} digits (more than {MAX_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadNumber("a number too large to represent (it would become Infinity)")
    return value


def _parse_float_fast(text: str) -> float:
    value = _parse_float(text)
    if "e" in text or "E" in text:
        raise NeedsScan
    return value


STRICT_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float, object_pairs_hook=_unique_keys
)
# For lines the pre-filter calls clean (no candidate anywhere in the raw line, at any nesting level): the
# number rules, and exponent-form numbers sent to the full path. Duplicate keys and JSON inside strings are
# not looked at there: with no candidate in the line, every copy of every key holds nothing to find, and
# the check would cost about a third of the fast path's time.
FAST_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float_fast)


def decode(decoder: json.JSONDecoder, text: str) -> Any:
    """``decoder.decode(text)`` without its two whitespace regex calls in the common case."""
    try:
        obj, end = decoder.raw_decode(text)
    except json.JSONDecodeError:
        if text[:1].isspace():
            return decoder.decode(text)  # leading whitespace: let decode() skip it (or report the error)
        raise
    if end != len(text) and not text[end:].isspace():
        while text[end] in " \t\r\n":
            end += 1
        raise json.JSONDecodeError("Extra data", text, end)
    return obj


def number_text(value: Any) -> str | None:
    """The digit string a JSON number is scanned as (None for anything else, including booleans)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e17:
            return str(int(value))  # 4915123456789.0 is scanned as 4915123456789
        return repr(value)
    return None


_OPENERS = {"{": "}", "[": "]", '"': '"'}


def decode_nested(value: str, depth: int) -> tuple[bool, Any]:
    """If ``value`` holds a JSON object, array or string (whitespace around allowed), ``(True, decoded)``;
    else ``(False, None)``. ``depth`` is how many JSON-in-string levels are already open. Raises
    :class:`ScanError` for duplicate keys inside and for nesting deeper than the bound. A string that would
    be JSON but for a refused number (``NaN``, ``1e400``, a huge integer) is scanned as text."""
    if len(value) < 2:
        return False, None
    first = value[0]
    if first.isspace() or value[-1].isspace():
        stripped = value.strip()
        if len(stripped) < 2:
            return False, None
        first, last = stripped[0], stripped[-1]
    else:
        stripped, last = value, value[-1]
    if _OPENERS.get(first) != last:
        return False, None
    try:
        decoded = STRICT_DECODER.decode(stripped)
    except json.JSONDecodeError:
        return False, None  # not JSON after all: scanned as text
    except DuplicateKey as exc:
        raise ScanError(
            f"a string holding JSON has the key {exc.key_repr} twice in one object",
            hint="duplicate keys are ambiguous (readers keep different copies); remove one",
        ) from None
    except BadNumber:
        return False, None  # not JSON we can re-serialize (NaN, 1e400, a huge integer): scanned as text
    except RecursionError:
        raise ScanError("a string holding JSON is nested too deeply to scan") from None
    if isinstance(decoded, str) and first != '"':
        return False, None  # pragma: no cover - only a JSON string literal decodes to a str
    if depth >= MAX_NESTED_JSON_DEPTH:
        raise ScanError(
            f"JSON inside strings is nested more than {MAX_NESTED_JSON_DEPTH} levels deep",
            hint="decode the inner JSON documents before sending (they cannot be scanned at this depth)",
        )
    return True, decoded
