"""JSON request bodies: decoded strictly, every value scanned (numbers too), re-encoded only if redacted.

Strict decoding refuses (400) what readers disagree on or cannot represent: duplicate keys in any
object, at any level (also inside strings that hold JSON), integers longer than
:data:`MAX_INT_DIGITS` digits, non-finite numbers (``NaN``, ``Infinity``, ``1e999``) and nesting
deeper than the bound.

Scanning sees every value the upstream will see: numbers are scanned as their digit strings
(``"phone": 4915123456789``), and strings that hold JSON are decoded (whitespace-tolerant) and scanned
as structures, to :data:`MAX_NESTED_STRINGS` levels of string-in-string. Nothing found: the client's
bytes are forwarded unchanged. Something redacted: the document is re-encoded by the gateway (a
redacted number becomes the redaction string; a redacted nested document is re-encoded into its string).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from bastion.gateway.errors import Refusal

MAX_INT_DIGITS = 40
MAX_NESTED_STRINGS = 8


class Num(str):
    """A JSON number: scanned as its digit string, re-emitted as its original literal when unchanged.

    The string value is what detectors see: the literal for integers, the integral digits for an
    integral float written with a fraction or exponent (``4539148803436467.0``, ``4.539148803436467e15``).
    """

    literal: str

    @classmethod
    def of(cls, literal: str, digits: str | None = None) -> Num:
        out = cls(digits if digits is not None else literal)
        out.literal = literal
        return out


class NestedDict(dict[str, Any]):
    """An object decoded from a string value that held JSON."""


class NestedList(list[Any]):
    """An array decoded from a string value that held JSON."""


def _invalid(message: str, hint: str | None = None) -> Refusal:
    return Refusal(400, "invalid_json", message, hint=hint or "send one well-formed JSON document")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _invalid(
            "the JSON body has the same key twice in one object",
            hint="duplicate keys are ambiguous (readers keep different copies); send each key once",
        )
    return out


def _int(text: str) -> Num:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _invalid(f"the JSON body has an integer longer than {MAX_INT_DIGITS} digits")
    return Num.of(text)


def _float(text: str) -> Num:
    mantissa = text.lower().split("e")[0].lstrip("-").replace(".", "")
    if len(mantissa) > MAX_INT_DIGITS or float(text) in (float("inf"), float("-inf")):
        raise _invalid("the JSON body has a number that is too long or not finite")
    try:
        value = Decimal(text)
    except InvalidOperation:  # pragma: no cover - the JSON grammar already holds
        return Num.of(text)
    if value == value.to_integral_value() and abs(value.adjusted()) <= MAX_INT_DIGITS:
        return Num.of(text, str(int(value)))
    return Num.of(text)


def _constant(name: str) -> Any:
    raise _invalid(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_int=_int, parse_float=_float, parse_constant=_constant)


def loads(raw: bytes | str) -> Any:
    """Strictly decode a JSON document; numbers become :class:`Num`. Refusal on anything ambiguous."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if text.startswith("\ufeff"):
            raise _invalid("the JSON body starts with a byte-order mark")
        return _DECODER.decode(text)
    except UnicodeDecodeError:
        raise _invalid("the JSON body is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise _invalid(f"the body is not valid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise _invalid("the JSON body is nested too deeply") from None


def _decode_nested(value: Any, level: int) -> Any:
    """Replace strings that hold JSON objects/arrays by decoded Nested containers (recursively)."""
    if isinstance(value, dict):
        for k, v in value.items():
            value[k] = _decode_nested(v, level)
        return value
    if isinstance(value, list):
        for i, v in enumerate(value):
            value[i] = _decode_nested(v, level)
        return value
    if isinstance(value, str) and not isinstance(value, Num):
        s = value.strip()
        if len(s) > 1 and s[0] in "{[" and s[-1] in "}]":
            try:
                inner = _DECODER.decode(s)
            except (json.JSONDecodeError, RecursionError):
                return value  # not JSON after all: scanned as text
            if isinstance(inner, (dict, list)):
                if level >= MAX_NESTED_STRINGS:
                    raise _invalid(f"the JSON body has JSON inside strings more than {MAX_NESTED_STRINGS} levels deep")
                inner = _decode_nested(inner, level + 1)
                return NestedDict(inner) if isinstance(inner, dict) else NestedList(inner)
    return value


def dumps(value: Any) -> str:
    """Encode a (scanned, possibly redacted) document: Num as its literal, Nested as a JSON string."""
    if isinstance(value, Num):
        return value.literal
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (NestedDict, NestedList)):
        return json.dumps(_dumps_plain(value), ensure_ascii=False)
    return _dumps_plain(value)


def _dumps_plain(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + dumps(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, str):
        return dumps(value)
    return json.dumps(value)


@dataclass
class JsonScan:
    """The outcome of scanning a JSON body: the bytes to forward and what was found (types only)."""

    body: bytes
    doc: Any
    action: str
    changed: bool
    rule_ids: list[str] = field(default_factory=list)
    entity_types: list[str] = field(default_factory=list)
    findings: int = 0
    classification: str | None = None


def _engine_json_api() -> Any:
    """The policy engine's own JSON-body scanner (``bastion.policies.scanner.scan_json_body``), if present."""
    from bastion.policies import scanner

    return getattr(scanner, "scan_json_body", None)


def scan_json(engine: Any, raw: bytes, what: str, opaque: frozenset[tuple[str, str]] = frozenset()) -> JsonScan:
    """Decode, scan every value (numbers and nested JSON included); block -> Refusal(403).

    Uses the engine's ``scan_json_body`` (same rules, owned by the policy engine) when the installed
    engine has it, else this module's decoder and walk. ``opaque``: (path, value) pairs not scanned (the
    ids of files this gateway admitted, where a job names them).
    """
    engine_scan = _engine_json_api()
    if engine_scan is not None:
        from bastion.policies.errors import ScanError

        try:
            scanned = engine_scan(engine, raw, source="request body", opaque=opaque)
        except ScanError as exc:
            raise _invalid(exc.message, hint=exc.hint) from None
        res = scanned.result
        body_out: bytes = scanned.body
    else:
        doc = loads(raw)
        shadow = _decode_nested(doc, 0)
        try:
            res = engine.scan_record(shadow, 1, copy_record=False, opaque=opaque)
        except RecursionError:
            raise _invalid("the JSON body is nested too deeply to scan") from None
        body_out = dumps(res.record).encode("utf-8") if res.changed else raw
    acted = [f for f in res.findings if f.action != "allow"]
    rule_ids = sorted({f.rule_id for f in acted})
    entities = sorted({f.entity for f in acted})
    if res.action == "block":
        raise Refusal(
            403,
            "policy_block",
            f"the {what} was blocked by the gateway's data policy",
            rule_ids=sorted({f.rule_id for f in acted if f.action == "block"}),
            entity_types=[f.entity for f in acted if f.action == "block"],
            hint="remove the personal data from the request's fields (names, metadata, prompts, graders)",
        )
    return JsonScan(body_out, res.record, res.action, res.changed, rule_ids, entities, len(acted), res.classification)


def plain(value: Any) -> Any:
    """The document with Num turned back into int/float and Nested into plain containers (for hooks)."""
    if isinstance(value, Num):
        text = value.literal
        return float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return str.__str__(value)
    return value
