"""Provider specs: a provider is data (its routes and what each may carry) plus a few small hooks.

A :class:`ProviderSpec` lists :class:`RouteSpec` entries. Each route says, declaratively:

- how it is matched: method, a path template (``/v1/files/{file_id}``), optionally query
  parameters that must be present (``match_query``) and which of the provider's hosts it goes to;
- what it may carry: the query parameters and request headers forwarded (allowlists of
  :class:`Opaque` values, each validated against its pattern; everything else is dropped, a value
  that fails its pattern is refused), the pattern of every path id (``ProviderSpec.ids``), and its
  body codec (``none`` | ``json`` | ``multipart`` | ``raw``);
- which step handles it (``forward`` = the generic scanned forward, or a provider hook such as
  ``files.create``), and which JSON fields must reference files this gateway admitted
  (:class:`FileRef`, dotted field paths).

The gateway core (``bastion.gateway.app``) does everything else the same way for every provider:
framing checks, the allowlists, body scanning, admission, the auth strategy, the audit entry and
the provider-shaped error (``ProviderSpec.errors``). See docs/gateway-providers.md.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import httpx

if TYPE_CHECKING:
    from starlette.responses import Response

    from bastion.gateway.app import Exchange, Gateway
    from bastion.gateway.errors import Refusal

BodyCodec = Literal["none", "json", "multipart", "raw"]
Default = Literal["on", "off", "always"]
Step = Callable[["Gateway", "Exchange"], Awaitable["Response"]]
ErrorEncoder = Callable[["Refusal"], tuple[str, bytes]]


@dataclass(frozen=True)
class Opaque:
    """An allow-listed opaque value (a header or query parameter) forwarded only if it matches ``pattern``.

    ``forward=False``: the gateway reads it (e.g. ``Idempotency-Key``) but never sends it upstream.
    """

    name: str
    pattern: str
    required: bool = False
    forward: bool = True

    def ok(self, value: str) -> bool:
        return compiled(self.pattern).fullmatch(value) is not None


@dataclass(frozen=True)
class FileRef:
    """A JSON field that must name a file this gateway admitted (for this upstream and client).

    ``path``: dotted field path, ``[]`` for every element of a list (``training_files[].file_id``).
    ``when``: only if the field at (path, value) has that value (``data_source.source.type`` = ``file_id``).
    ``purposes``: the admitted file's purpose must be one of these (empty: any purpose).
    """

    path: str
    when: tuple[str, str] | None = None
    purposes: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class RouteSpec:
    method: str
    path: str
    name: str
    step: str = "forward"
    body: BodyCodec = "none"
    query: tuple[Opaque, ...] = ()
    headers: tuple[Opaque, ...] = ()
    refs: tuple[FileRef, ...] = ()
    #: "always": a data route the gateway scans (never switched off by the allow list); "on": allowed
    #: unless the operator's allow list leaves it out; "off": only if the operator lists it.
    default: Default = "off"
    #: a known route that is refused unless the operator lists it, with this reason (e.g. files/import)
    refused: str | None = None
    host: str = "api"
    match_query: tuple[str, ...] = ()
    #: a download of stored data (content routes): allowed or denied by the gateway's download policy
    download: bool = False
    #: the URL is a gateway-issued capability (an upload URL the gateway put in a rewritten redirect, which
    #: the SDK calls without its credential): ``gateway.allowed_clients`` is checked by the step against the
    #: client the capability was issued to, not against the (absent) credential of this request
    capability: bool = False
    #: the ids the upstream issues in a 2xx JSON answer of this route (a job's number), which a later path
    #: may carry back: kept so that the personal-data scan of path ids leaves them alone there
    #: (``Gateway._known_among``). Read from answers of known length up to ``MAX_RESPONSE``.
    issued: Callable[[Any], Iterable[str]] | None = None

    def compile(self) -> re.Pattern[str]:
        regex = re.escape(self.path).replace(r"\{", "{").replace(r"\}", "}").replace(r"\+}", "+}")
        regex = re.sub(r"\{(\w+)\+\}", r"(?P<\1>[^?#]+)", regex)  # {key+}: one or more segments (S3 keys)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        return re.compile(f"^{regex}/?$")


@dataclass(frozen=True)
class Matched:
    route: RouteSpec
    params: Mapping[str, str]


@dataclass
class ProviderSpec:
    """One provider: its routes, id shapes, common headers, credential handling, error shape and hooks."""

    name: str
    routes: tuple[RouteSpec, ...]
    #: path parameter name -> the pattern every such id must match (anything else is refused)
    ids: Mapping[str, str]
    #: headers allowed on every route (validated, forwarded as the gateway writes them)
    headers: tuple[Opaque, ...] = ()
    #: query parameters allowed on every route
    query: tuple[Opaque, ...] = ()
    #: how a client credential arrives (header name -> scheme "bearer" | "key") and how the gateway sends one
    credentials: Mapping[str, str] = field(default_factory=lambda: {"authorization": "bearer"})
    #: how a gateway-held key is sent: "bearer" (Authorization: Bearer) or the name of a key header
    held_key: str = "bearer"
    errors: ErrorEncoder | None = None
    steps: Mapping[str, Step] = field(default_factory=dict)
    #: per data purpose: a record checker factory (None: JSONL records of any shape)
    record_checks: Mapping[str, Callable[[], Any] | None] = field(default_factory=dict)
    #: known hosts -> jurisdiction (residency), used when the upstream config names none
    jurisdictions: Mapping[str, str] = field(default_factory=dict)
    #: provider regions -> jurisdiction (Azure resource regions)
    regions: Mapping[str, str] = field(default_factory=dict)
    #: patterns of hosts this provider serves (a base URL elsewhere is a configuration error)
    host_patterns: tuple[str, ...] = ()
    #: policy switches a step consults (name -> what listing it allows), off unless the operator lists the
    #: name in ``gateway.allow_routes`` (e.g. a job field that makes the provider pull a model from elsewhere)
    options: Mapping[str, str] = field(default_factory=dict)
    #: run once per upstream at gateway start (read credentials, fail early); its result is
    #: ``gw.provider_state[<upstream>]`` for the provider's steps
    setup: Callable[[Gateway, str], Any] | None = None

    def __post_init__(self) -> None:
        self.compiled = [(r, r.compile()) for r in self.routes]
        # a route name may have several path forms (Azure: classic and /openai/v1); allow lists use names
        for r in self.routes:
            for p in re.findall(r"\{(\w+)\+?\}", r.path):
                if p not in self.ids:
                    raise ValueError(f"provider {self.name}: route {r.name} has id {{{p}}} without a pattern")
            if r.step != "forward" and r.step not in self.steps:
                raise ValueError(f"provider {self.name}: route {r.name} names unknown step {r.step!r}")
        # the first matching route wins and a {param} matches any character but '/': a route that an earlier
        # one of the same method always matches (``{id}`` before ``{id}:cancel``) could never be reached
        for j, (later, _) in enumerate(self.compiled):
            sample = re.sub(r"\{(\w+)\}", "x1", later.path)
            for earlier, rx in self.compiled[:j]:
                same_form = earlier.method == later.method and set(earlier.match_query) <= set(later.match_query)
                if same_form and rx.match(sample):
                    raise ValueError(
                        f"provider {self.name}: route {later.name} ({later.path}) is shadowed by {earlier.name} "
                        f"({earlier.path}), listed before it; list the more specific route first"
                    )

    @property
    def names(self) -> set[str]:
        """Route names and option names: what ``gateway.allow_routes`` may list."""
        return {r.name for r in self.routes} | set(self.options)

    @property
    def default_on(self) -> frozenset[str]:
        return frozenset(r.name for r in self.routes if r.default == "on")

    def route(self, name: str) -> RouteSpec:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)

    def match(self, method: str, path: str, query_keys: frozenset[str] = frozenset()) -> Matched | None:
        """The route for ``method path`` (path relative to the upstream prefix), or None (denied)."""
        method = method.upper()
        for spec, rx in self.compiled:
            if spec.method != method:
                continue
            if spec.match_query and not set(spec.match_query) <= query_keys:
                continue
            m = rx.match(path)
            if m:
                return Matched(spec, m.groupdict())
        return None

    def jurisdiction_for(self, base_url: str) -> str | None:
        host = httpx.URL(base_url).host
        return self.jurisdictions.get(host)


def compiled(pattern: str) -> re.Pattern[str]:
    """``re.compile(pattern)``, cached (spec patterns are few and used on every request)."""
    cached = _PATTERNS.get(pattern)
    if cached is None:
        cached = _PATTERNS[pattern] = re.compile(pattern)
    return cached


_PATTERNS: dict[str, re.Pattern[str]] = {}

# -- auth strategies (httpx.Auth flows) ------------------------------------------------------------------
TOKEN = r"[A-Za-z0-9._~+/=:-]{1,4096}"


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` (OpenAI keys, Azure Entra tokens, a gateway-held key)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class HeaderKeyAuth(httpx.Auth):
    """A key in its own header (Azure ``api-key``)."""

    def __init__(self, header: str, key: str) -> None:
        self._header = header
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self._header] = self._key
        yield request


def apply_auth(auth: httpx.Auth | None, request: httpx.Request) -> httpx.Request:
    """Run a single-step auth flow (our strategies and SigV4-style signers are single-step)."""
    if auth is None:
        return request
    flow = auth.sync_auth_flow(request)
    out = next(flow)
    flow.close()
    return out


def held_key_auth(scheme: str, key: str) -> httpx.Auth:
    if scheme == "google-service-account":  # Cloud Storage / Vertex AI: OAuth tokens minted from a held key
        from bastion.adapters.gcs.auth import ServiceAccountAuth

        return ServiceAccountAuth(key)
    return BearerAuth(key) if scheme == "bearer" else HeaderKeyAuth(scheme, key)


def json_error(refusal: Refusal) -> tuple[str, bytes]:
    """The OpenAI-style error body (Azure OpenAI uses the same shape)."""
    import json

    body = {
        "error": {
            "message": refusal.client_message,
            "type": "server_error" if refusal.status >= 500 else "invalid_request_error",
            "param": refusal.param,
            "code": refusal.kind,
        }
    }
    return "application/json", json.dumps(body).encode()


def field_values(doc: Any, path: str, when: tuple[str, str] | None = None) -> list[tuple[str, Any]]:
    """(concrete path, value) for every match of a dotted ``path`` (``a.b[].c``) in ``doc``."""
    out: list[tuple[str, Any]] = []

    def walk(node: Any, parts: list[str], where: str, root: Any) -> None:
        if not parts:
            out.append((where, node))
            return
        head, rest = parts[0], parts[1:]
        if head.endswith("[]"):
            key = head[:-2]
            seq = node.get(key) if isinstance(node, dict) else None
            if isinstance(seq, list):
                for i, item in enumerate(seq):
                    walk(item, rest, f"{where}{key}[{i}].", root)
            return
        if isinstance(node, dict) and head in node:
            walk(node[head], rest, f"{where}{head}." if rest else f"{where}{head}", root)

    if when is not None:
        cond = field_values(doc, when[0])
        if not any(v == when[1] for _, v in cond):
            return []
    walk(doc, path.split("."), "", doc)
    return [(p.rstrip("."), v) for p, v in out]


def string_paths(doc: Any, values: Iterable[str]) -> list[tuple[str, str]]:
    """(path, value) of every string in ``doc`` equal to one of ``values``, the path written as the policy
    engine writes it (``a.b[0].c``; ``$`` for a document that is the string itself)."""
    wanted = set(values)
    out: list[tuple[str, str]] = []
    stack: list[tuple[Any, str]] = [(doc, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            if node in wanted:
                out.append((where or "$", node))
        elif isinstance(node, dict):
            stack.extend((v, f"{where}.{k}" if where else str(k)) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))
    return out


__all__ = [
    "TOKEN",
    "BearerAuth",
    "BodyCodec",
    "FileRef",
    "HeaderKeyAuth",
    "Matched",
    "Opaque",
    "ProviderSpec",
    "RouteSpec",
    "Step",
    "apply_auth",
    "compiled",
    "field_values",
    "held_key_auth",
    "json_error",
    "string_paths",
]
