"""What a client request may carry, checked before anything is read or sent upstream.

- framing: ``Content-Length`` together with ``Transfer-Encoding``, repeated or non-numeric lengths, a
  transfer coding other than ``chunked``, control characters in header values and method-override
  headers are refused with 400 on every route (request-smuggling shapes);
- a body where the route takes none (a GET, a DELETE, a cancel) is refused;
- path ids must match their pattern and carry no personal data;
- query parameters: only the route's allowlist, each value matching its pattern (others refused);
- headers: only the route's and provider's allowlist, each value matching its pattern; everything
  else (``User-Agent``, ``X-Stainless-*``, custom headers) is dropped. Credentials are never copied:
  the auth strategy writes them.

Errors name the parameter or header, never the value the client sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from bastion.gateway.errors import Refusal
from bastion.gateway.spec import TOKEN, Matched, Opaque, ProviderSpec, compiled

METHOD_OVERRIDE = frozenset({"x-http-method-override", "x-http-method", "x-method-override", "x-original-method"})
_SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def _framing(message: str) -> Refusal:
    return Refusal(
        400,
        "bad_framing",
        message,
        hint="send one Content-Length or chunked Transfer-Encoding, plain header values, no method overrides",
    )


def _safe_header_name(name: str) -> str:
    """A header name as it may appear in an error: known-safe characters only, else a placeholder."""
    return name if len(name) <= 40 and set(name) <= _SAFE_NAME else "(a header)"


def check_framing(raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for name_b, value_b in raw_headers:
        name = name_b.decode("latin-1").lower()
        if any(c in value_b for c in (b"\r", b"\n", b"\x00")):
            raise _framing(f"header {_safe_header_name(name)} contains a line break or NUL")
        if name == "content-length":
            lengths.append(value_b)
        elif name == "transfer-encoding":
            codings.append(value_b)
        elif name in METHOD_OVERRIDE:
            raise _framing(f"method-override header {name} is not accepted")
    if lengths and codings:
        raise _framing("the request has both Content-Length and Transfer-Encoding")
    if len(lengths) > 1:
        raise _framing("the request has more than one Content-Length")
    if lengths and not lengths[0].strip().isdigit():
        raise _framing("Content-Length is not a number")
    if len(codings) > 1 or (codings and codings[0].strip().lower() != b"chunked"):
        raise _framing("Transfer-Encoding other than a single 'chunked' is not accepted")


def has_body(raw_headers: Iterable[tuple[bytes, bytes]]) -> bool:
    for name_b, value_b in raw_headers:
        name = name_b.lower()
        if name == b"transfer-encoding":
            return True
        if name == b"content-length" and value_b.strip() not in (b"0", b""):
            return True
    return False


def check_no_body(raw_headers: Iterable[tuple[bytes, bytes]], route_name: str) -> None:
    if has_body(raw_headers):
        raise Refusal(
            400,
            "body_not_allowed",
            f"route {route_name} takes no request body, but one was sent",
            hint="send the request without a body (the gateway never forwards data on routes that take none)",
        )


def check_opaque(engine: Any, values: dict[str, str], what: str, route: str) -> None:
    """Opaque values that matched their pattern must still carry no personal data (a cursor, an id)."""
    if not values:
        return
    scan = engine.scan_record(values, 0)
    hits = [f for f in scan.findings if f.action != "allow"]
    if hits:
        kind = "invalid_id" if what == "path id" else f"invalid_{what.split()[0]}"
        hint = (
            "if it is your organisation's own identifier (a project number), the gateway operator can list it "
            "in upstreams.<name>.own_ids"
            if what == "path id"
            else None
        )
        raise Refusal(
            400,
            kind,
            f"a {what} of {route} looks like personal data; it is not forwarded",
            hint=hint,
            rule_ids=sorted({f.rule_id for f in hits}),
            entity_types=[f.entity for f in hits],
        )


def check_ids(
    spec: ProviderSpec, matched: Matched, engine: Any, opaque: frozenset[str] = frozenset()
) -> dict[str, str]:
    """Validate every path id against its pattern and the policy; return them (safe to log).

    Ids in ``opaque`` (files this gateway admitted: the upstream issued them) are not scanned."""
    for name, value in matched.params.items():
        if compiled(spec.ids[name]).fullmatch(value) is None:
            raise Refusal(
                400,
                "invalid_id",
                f"the {name} in the path of {matched.route.name} does not have the shape of a {spec.name} {name}",
                param=name,
                hint="use the id exactly as the provider returned it",
            )
    scanned = {name: value for name, value in matched.params.items() if value not in opaque}
    check_opaque(engine, scanned, "path id", matched.route.name)
    return dict(matched.params)


def check_query(
    spec: ProviderSpec, matched: Matched, query_string: str, engine: Any, opaque: frozenset[str] = frozenset()
) -> list[tuple[str, str]]:
    """The query parameters to forward: each one allow-listed and matching its pattern.

    Values in ``opaque`` (ids the upstream gave out: an ``after`` cursor naming an Azure job) are not scanned."""
    allowed = {q.name: q for q in (*spec.query, *matched.route.query)}
    # a key without '=' (S3's ``?uploads``) is that key with an empty value; it still needs its allowlist entry
    query_string = "&".join(p if "=" in p or not p else p + "=" for p in query_string.split("&"))
    try:
        pairs = parse_qsl(query_string, keep_blank_values=True, strict_parsing=bool(query_string), errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise Refusal(400, "invalid_query", f"the query string of {matched.route.name} is malformed") from None
    seen: set[str] = set()
    out: list[tuple[str, str]] = []
    for key, value in pairs:
        rule = allowed.get(key)
        if rule is None:
            raise Refusal(
                400,
                "invalid_query",
                f"route {matched.route.name} accepts the query parameters "
                f"{', '.join(sorted(allowed)) or '(none)'}; another one was sent",
                hint="the gateway forwards only query parameters it knows, so no data travels unscanned",
            )
        if key in seen:
            raise Refusal(400, "invalid_query", f"query parameter {key} is repeated", param=key)
        seen.add(key)
        if not rule.ok(value):
            raise Refusal(
                400,
                "invalid_query",
                f"query parameter {key} of {matched.route.name} has an unexpected value",
                param=key,
            )
        if rule.forward:
            out.append((key, value))
    missing = [q.name for q in allowed.values() if q.required and q.name not in seen]
    if missing:
        raise Refusal(400, "invalid_query", f"query parameter {missing[0]} is required", param=missing[0])
    check_opaque(engine, {k: v for k, v in pairs if v not in opaque}, "query parameter", matched.route.name)
    return out


@dataclass(frozen=True)
class CheckedHeaders:
    forward: list[tuple[str, str]]
    consumed: dict[str, str]


def check_headers(
    spec: ProviderSpec, matched: Matched, headers: Sequence[tuple[str, str]], engine: Any
) -> CheckedHeaders:
    allowed: dict[str, Opaque] = {h.name: h for h in (*spec.headers, *matched.route.headers)}
    seen: set[str] = set()
    forward: list[tuple[str, str]] = []
    consumed: dict[str, str] = {}
    for name_raw, value in headers:
        name = name_raw.lower()
        rule = allowed.get(name)
        if rule is None:
            continue  # dropped: never forwarded
        if name in seen:
            raise Refusal(400, "invalid_header", f"header {name} is repeated", param=name)
        seen.add(name)
        if not rule.ok(value):
            raise Refusal(
                400,
                "invalid_header",
                f"header {name} has a value the gateway does not forward",
                param=name,
                hint="send the header as the official SDK does, or leave it out",
            )
        if rule.forward:
            forward.append((name, value))
        else:
            consumed[name] = value
    missing = [h.name for h in allowed.values() if h.required and h.name not in seen]
    if missing:
        raise Refusal(400, "invalid_header", f"header {missing[0]} is required", param=missing[0])
    # A consumed value (Idempotency-Key) never leaves and is never recorded: the gateway keeps and forwards
    # only digests of it. Scanning it refused a client whose keys are sha256 hex now and then (2.3 % of them
    # read as a card or id number), for no data that could leave.
    check_opaque(engine, dict(forward), "header value", matched.route.name)
    return CheckedHeaders(forward, consumed)


def client_credential(spec: ProviderSpec, headers: Any) -> tuple[str, str] | None:
    """(scheme, token) of the client's credential, validated; None if there is none."""
    for name, scheme in spec.credentials.items():
        value = headers.get(name)
        if value is None:
            continue
        if scheme == "bearer":
            kind, _, token = value.partition(" ")
            if kind.lower() != "bearer":
                raise Refusal(401, "invalid_credentials", f"header {name} must be 'Bearer <token>'")
        else:
            token = value
        token = token.strip()
        if compiled(TOKEN).fullmatch(token) is None:
            raise Refusal(401, "invalid_credentials", f"the credential in header {name} is malformed")
        return ("bearer" if scheme == "bearer" else name, token)
    return None
