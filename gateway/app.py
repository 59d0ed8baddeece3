"""The gateway: a Starlette app that routes ``/<upstream>/<path>`` through the upstream's provider spec.

Per request, the same pipeline for every provider (``bastion.gateway.spec``):

1. framing: smuggling shapes (CL+TE, repeated lengths, control characters, method overrides) -> 400;
2. match: the provider's route for (method, path, query); unknown -> 403 (default deny);
3. what the route may carry: path ids by pattern (and free of personal data), the query and header
   allowlists, no body where the route takes none;
4. the route's step: ``forward`` (JSON bodies decoded strictly and scanned, file references checked
   against the admitted files of this upstream and client) or a provider hook (uploads);
5. forward with the auth strategy (the client's credential re-written, or a gateway-held key);
6. record the outcome (``forwarded`` / ``forwarded_no_answer`` / ``refused_before_forwarding``),
   durably, before the client gets its answer; errors in the provider's shape.

Nothing the client sent reaches the upstream unless the gateway wrote it, scanned it, or it is an
allow-listed opaque value that matched its pattern. Logs, audit entries, metrics and errors carry
route names, validated ids, rule ids, entity types, counts and digests, never client text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import anyio
import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp

from bastion.adapters import get_provider
from bastion.errors import BastionError, ConfigError
from bastion.gateway import inbound, jsonbody
from bastion.gateway.audit import (
    FORWARDED,
    REFUSED_BEFORE_FORWARDING,
    AuditLog,
    AuditUnavailable,
    Outcome,
    client_fingerprint,
)
from bastion.gateway.config import GatewayConfig, GatewaySettings
from bastion.gateway.errors import Refusal
from bastion.gateway.jsonbody import JsonScan, scan_json
from bastion.gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from bastion.gateway.proxy import Upstream, UpstreamReply, client_response_headers, read_limited
from bastion.gateway.spec import (
    FileRef,
    ProviderSpec,
    RouteSpec,
    compiled,
    field_values,
    held_key_auth,
    json_error,
    string_paths,
)
from bastion.gateway.state import Admitted, StateError, clean_spool_dir, open_state_store

log = logging.getLogger("bastion.gateway")

SCAN_BATCH = 1024 * 1024
SMALL_RESPONSE = 256 * 1024
MAX_RESPONSE = 4 * 1024 * 1024
_GENERIC_PROVIDER = "openai"


def digest(value: str | bytes) -> str:
    """``sha256:<16 hex>`` of client text: how the audit log refers to something it must not quote."""
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return "sha256:" + hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Exchange:
    """One client request as it moves through the gateway, plus what the audit entry will say."""

    request: Request
    upstream: Upstream
    spec: ProviderSpec
    route: RouteSpec
    fingerprint: str
    ids: dict[str, str] = field(default_factory=dict)
    query: list[tuple[str, str]] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)
    consumed: dict[str, str] = field(default_factory=dict)
    auth: httpx.Auth | None = None
    audit: dict[str, Any] = field(default_factory=dict)
    #: bytes of this request may have reached the upstream (the audit wording depends on it)
    forwarded: bool = False

    @property
    def upstream_name(self) -> str:
        return self.upstream.name

    @property
    def path(self) -> str:
        """The upstream path, written by the gateway from the route template and the validated ids."""
        return self.route.path.replace("+}", "}").format(**self.ids)


class Gateway:
    """Shared services of one gateway instance: config, policy engine, upstreams, audit, metrics."""

    def __init__(
        self,
        config: GatewayConfig,
        engine: Any,
        *,
        policy_name: str = "<policy>",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.settings: GatewaySettings = config.gateway
        self.engine = engine
        self.policy_name = policy_name
        self.metrics = GatewayMetrics()
        self.specs: dict[str, ProviderSpec] = {
            name: get_provider(config.adapter_name(name)) for name in config.upstreams
        }
        self.upstreams: dict[str, Upstream] = {}
        for name, cfg in config.upstreams.items():
            spec = self.specs[name]
            from_region = spec.regions.get(cfg.region) if cfg.region else None
            if cfg.region and from_region is None and cfg.jurisdiction is None:
                raise ConfigError(
                    f"upstream {name!r}: region {cfg.region!r} is not one the {spec.name} provider knows",
                    hint="set upstreams.<name>.jurisdiction (e.g. EU, US) for residency rules",
                )
            if cfg.jurisdiction and from_region and cfg.jurisdiction.upper() != from_region:
                raise ConfigError(
                    f"upstream {name!r}: jurisdiction {cfg.jurisdiction} contradicts region {cfg.region} "
                    f"({from_region})",
                    hint="remove one of them or make them agree",
                )
            jurisdiction = cfg.jurisdiction or from_region or spec.jurisdiction_for(cfg.base_url)
            if jurisdiction is None:
                raise ConfigError(
                    f"upstream {name!r} has no jurisdiction and its host is not one the {spec.name} provider knows",
                    hint="set upstreams.<name>.jurisdiction (e.g. EU, US) or region for residency rules",
                )
            self.upstreams[name] = Upstream(
                name,
                cfg,
                jurisdiction=jurisdiction,
                max_connections=self.settings.max_connections,
                transport=transport,
            )
        # Provider keys are read once at start so a missing env var fails at start, not per request.
        self._held: dict[str, httpx.Auth | None] = {}
        for name in config.upstreams:
            key = config.provider_key(name)
            scheme = config.upstreams[name].auth.scheme or self.specs[name].held_key
            self._held[name] = held_key_auth(scheme, key) if key is not None else None
        # provider set-up (SigV4 credentials, ...): read now so that a missing secret fails at start
        self.provider_state: dict[str, Any] = {}
        for name, spec in self.specs.items():
            if spec.setup is not None:
                self.provider_state[name] = spec.setup(self, name)
        self._fallback = get_provider(_GENERIC_PROVIDER)
        allowed = set(self.settings.allow_routes)
        for name, spec in self.specs.items():
            unknown = allowed - spec.names
            if unknown and len(self.specs) == 1:
                raise ConfigError(
                    f"gateway.allow_routes names route(s) the {name!r} provider does not know: "
                    + ", ".join(sorted(unknown)),
                    hint="known routes: " + ", ".join(sorted(spec.names)),
                )
        # configuration is checked above; only now are files and threads opened
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.state = open_state_store(
            self.settings.state_location,  # gateway.state_url (PostgreSQL for replicas) or the state dir
            part_key_env=self.settings.part_key_env,
            lease_s=self.settings.state_lease_s,
            idempotency_ttl_s=self.settings.idempotency_ttl_s,
            pool_size=self.settings.state_pool_size,
        )
        # spools (scanned uploads waiting to be forwarded) live under the state dir; leftovers of an
        # interrupted run are removed now (raw data never outlives its request on disk) - unless a
        # configured part key lets other processes share the state dir (they may be spooling now)
        self.spool_dir = self.settings.spool_path
        if self.state.parts.ephemeral:
            clean_spool_dir(self.spool_dir)
        self.audit = AuditLog(
            self.settings.audit_path,
            segment_max_bytes=self.settings.audit_segment_max_bytes,
            segment_max_entries=self.settings.audit_segment_max_entries,
        )
        self.app = self._build_app()

    def held_auth(self, upstream: str) -> httpx.Auth | None:
        """The auth strategy of the key the gateway holds for ``upstream`` (replace mode), or None."""
        return self._held.get(upstream)

    # -- policy decisions -------------------------------------------------------------------------
    def allowed(self, spec: ProviderSpec, route: RouteSpec) -> bool:
        if route.default == "always" and route.refused is None:
            return True
        allow = set(self.settings.allow_routes) if self.settings.allow_routes else spec.default_on
        return route.name in allow

    def option_allowed(self, name: str) -> bool:
        """A provider option (``ProviderSpec.options``): on only if the operator lists it in allow_routes."""
        return name in self.settings.allow_routes

    def check_residency(self, ex: Exchange, classification: str | None) -> dict[str, Any]:
        jurisdiction = ex.upstream.jurisdiction
        try:
            res = self.engine.check_residency(ex.upstream_name, jurisdiction, classification)
        except BastionError as exc:
            raise Refusal(403, "residency", f"residency check failed: {exc.message}", hint=exc.hint) from None
        info = {"allowed": bool(res.allowed), "rule_id": res.rule_id, "jurisdiction": jurisdiction}
        ex.audit["residency"] = info
        if not res.allowed:
            raise Refusal(
                403,
                "residency",
                f"data classified {classification or 'unclassified'!r} may not go to upstream {ex.upstream_name!r} "
                f"(jurisdiction {jurisdiction}): {res.reason}",
                rule_ids=[res.rule_id] if res.rule_id else [],
                hint="use an upstream in an allowed jurisdiction, or change the data's classification by redacting it",
            )
        return info

    # -- reading the body ---------------------------------------------------------------------------
    async def decoded_body(self, ex: Exchange, limit: int) -> AsyncIterator[bytes]:
        """The request body, Content-Encoding (gzip/deflate) decoded, at most ``limit`` decoded bytes."""
        enc = ex.request.headers.get("content-encoding", "").strip().lower()
        if enc in ("", "identity"):
            dec = None
        elif enc in ("gzip", "x-gzip", "deflate"):
            dec = zlib.decompressobj(wbits=47 if enc != "deflate" else 15)
        else:
            raise Refusal(
                415,
                "unsupported_content_encoding",
                "the request's Content-Encoding is not supported by the gateway",
                hint="send the upload uncompressed, or gzip-compressed",
            )
        total = 0

        def count(n: int) -> None:
            nonlocal total
            total += n
            if total > limit:
                raise Refusal(
                    413,
                    "upload_too_large",
                    f"the request body is larger than this gateway's limit of {limit} bytes",
                    hint="split the dataset into smaller files, or ask the operator to raise gateway.max_upload_bytes",
                )

        try:
            async for chunk in ex.request.stream():
                if dec is None:
                    count(len(chunk))
                    yield chunk
                    continue
                data = chunk
                while data:
                    try:
                        out = dec.decompress(data, SCAN_BATCH)
                    except zlib.error:
                        raise Refusal(
                            400, "invalid_upload", f"the {enc}-encoded request body is corrupt (cannot be decoded)"
                        ) from None
                    data = dec.unconsumed_tail
                    if dec.eof and dec.unused_data:
                        raise Refusal(400, "invalid_upload", f"unexpected data after the end of the {enc} stream")
                    count(len(out))
                    if out:
                        yield out
        except ClientDisconnect:
            raise Refusal(
                400, "client_disconnected", "the client closed the connection before the upload ended"
            ) from None
        if dec is not None and not dec.eof:
            raise Refusal(400, "invalid_upload", f"the {enc}-encoded request body is truncated")

    async def feed(self, ex: Exchange, limit: int, sink: Callable[[bytes], None]) -> int:
        """Stream the decoded body into ``sink`` in ~1 MiB batches, run off the event loop; bytes fed."""
        buf = bytearray()
        n = 0
        async for chunk in self.decoded_body(ex, limit):
            buf += chunk
            if len(buf) >= SCAN_BATCH:
                data, buf = bytes(buf), bytearray()
                n += len(data)
                await anyio.to_thread.run_sync(sink, data)
        if buf:
            n += len(buf)
            await anyio.to_thread.run_sync(sink, bytes(buf))
        return n

    async def read_body(self, ex: Exchange, limit: int | None = None) -> bytes:
        buf = bytearray()
        async for chunk in self.decoded_body(ex, limit or self.settings.max_json_body_bytes):
            buf += chunk
        return bytes(buf)

    async def scan_json(
        self, ex: Exchange, raw: bytes, what: str, known: frozenset[tuple[str, str]] = frozenset()
    ) -> JsonScan:
        """:func:`~bastion.gateway.jsonbody.scan_json` in a worker thread, leaving alone the (path, value)
        pairs in ``known`` and every string equal to one of the upstream's ``own_ids`` (an AWS role ARN whose
        account number reads as an id number, a service account's address)."""
        own_ids = ex.upstream.config.own_ids
        own = await anyio.to_thread.run_sync(_own_pairs, raw, own_ids) if own_ids else frozenset()
        if own:
            ex.audit["own_values"] = len(own)  # how many, not where: a path is made of the client's keys
        return await anyio.to_thread.run_sync(scan_json, self.engine, raw, what, known | own)

    async def scan_json_body(self, ex: Exchange, what: str) -> JsonScan:
        """Read, strictly decode and scan a JSON body; check its file references and images."""
        from bastion.gateway.images import check_images

        raw = await self.read_body(ex)
        if not raw.strip():
            raise Refusal(400, "invalid_json", f"route {ex.route.name} needs a JSON body")
        known = await self.admitted_ref_ids(ex, raw)
        scan = await self.scan_json(ex, raw, what, known)
        if scan.findings:
            ex.audit["body_findings"] = {"entity_types": scan.entity_types, "rule_ids": scan.rule_ids}
        problem = check_images(scan.doc, self.settings.remote_images)
        if problem is not None:
            raise Refusal(
                403 if problem.startswith("an image URL") else 400,
                "image_not_allowed",
                f"the {what} has an image this gateway does not forward: {problem}",
                hint="send images inline as data: URIs (PNG, JPEG or WEBP, at most 10 MB)",
            )
        if ex.route.refs:
            await self.check_refs(ex, scan.doc)
        doc = scan.doc if isinstance(scan.doc, dict) else {}
        if isinstance(doc.get("model"), str):
            ex.audit["model_sha256"] = digest(doc["model"])
        method = doc.get("method")
        kind = method.get("type") if isinstance(method, dict) else None
        if isinstance(kind, str) and kind in ("supervised", "dpo", "reinforcement"):
            ex.audit["job_method"] = kind
        return scan

    def _admitted(self, ex: Exchange, ref: str) -> Admitted | None:
        return self.state.admitted(ex.upstream_name, ref, client=ex.fingerprint)

    async def admitted_ref_ids(self, ex: Exchange, raw: bytes) -> frozenset[tuple[str, str]]:
        """(path, value) of the route's :class:`FileRef` fields that name files this gateway admitted for
        this upstream and client: ids the upstream issued, which the body scan leaves alone there (their
        random characters read as a card or phone now and then, which would redact the id and refuse the
        job). The same value anywhere else is scanned; other values of those fields are scanned as usual
        and then refused by :meth:`check_refs`."""
        if not ex.route.refs:
            return frozenset()
        doc = jsonbody.plain(jsonbody.loads(raw))
        id_pattern = compiled(ex.spec.ids.get("file_id", r"[A-Za-z0-9_-]{1,128}"))
        candidates = {
            (where, value)
            for ref in ex.route.refs
            for where, value in field_values(doc, ref.path, ref.when)
            if isinstance(value, str) and id_pattern.fullmatch(value) is not None
        }
        known = await self._admitted_among(ex, (value for _, value in candidates))
        return frozenset((where, value) for where, value in candidates if value in known)

    async def _admitted_among(self, ex: Exchange, values: Iterable[str]) -> frozenset[str]:
        """Those of ``values`` that name a file admitted (allowed or redacted) for this upstream and client."""
        known: set[str] = set()
        for value in sorted(set(values)):
            item = await anyio.to_thread.run_sync(self._admitted, ex, value)
            if item is not None and item.decision in ("allow", "redact"):
                known.add(value)
        return frozenset(known)

    async def _known_among(self, ex: Exchange, values: Iterable[str]) -> frozenset[str]:
        """Those of ``values`` the upstream itself gave out (files admitted for this client, ids it issued) or
        the operator named as the organisation's own (``upstreams.<name>.own_ids``).

        Sending such a value back tells the upstream nothing it did not say first, so the personal-data scan
        of path ids leaves it alone (a job number of 19 random digits passes a card check 3 % of the time)."""
        wanted = set(values)
        own = wanted & set(ex.upstream.config.own_ids)
        wanted -= own
        admitted = await self._admitted_among(ex, wanted) | own
        digests = {_issued_digest(v): v for v in wanted - admitted}
        issued = await anyio.to_thread.run_sync(self.state.issued_among, ex.upstream_name, digests)
        return admitted | frozenset(digests[d] for d in issued)

    async def note_issued(self, ex: Exchange, values: Iterable[str]) -> None:
        """Record ids the upstream issued in its answer (a job's name), for :meth:`_known_among`.

        Called after the upstream acted: a state store that fails here does not turn that success into an
        error (the client would retry and create a second job); the id is then scanned like any other."""
        wanted = [_issued_digest(v) for v in values if v and len(v) <= 256 and v.isprintable()]
        if not wanted:
            return
        try:
            await anyio.to_thread.run_sync(self.state.issue, ex.upstream_name, wanted)
        except StateError as exc:
            log.warning(  # the type only, as every gateway log line: a message may name the store's URL
                "could not record the ids %s issued (%s); they are scanned when sent back",
                ex.upstream_name,
                type(exc).__name__,
            )

    async def _note_issued_in(self, ex: Exchange, raw: bytes) -> None:
        """:meth:`note_issued` for the ids ``ex.route.issued`` finds in a 2xx JSON answer."""
        await self.note_issued(ex, await anyio.to_thread.run_sync(_issued_in, ex.route, raw))

    async def check_refs(self, ex: Exchange, doc: Any) -> list[Admitted]:
        """Every :class:`FileRef` of the route must name a file admitted for this upstream and client."""
        found: dict[str, Any] = {}
        admitted: list[Admitted] = []
        id_pattern = compiled(ex.spec.ids.get("file_id", r"[A-Za-z0-9_-]{1,128}"))
        for ref in ex.route.refs:
            if ref.when is not None and not any(v == ref.when[1] for _, v in field_values(doc, ref.when[0])):
                continue
            values = field_values(doc, ref.path)
            if ref.required and not values:
                raise Refusal(400, "invalid_request", f"'{ref.path}' is required (a file id)", param=ref.path)
            for where, value in values:
                if value is None and not ref.required:
                    continue
                if not isinstance(value, str) or id_pattern.fullmatch(value) is None:
                    raise Refusal(400, "invalid_request", f"'{where}' must be a file id", param=where)
                item = await anyio.to_thread.run_sync(self._admitted, ex, value)
                if item is None or item.decision not in ("allow", "redact"):
                    raise Refusal(
                        403,
                        "unscanned_file",
                        f"{where} names a file that was not uploaded through this gateway for upstream "
                        f"{ex.upstream_name!r} by this client, so it was never scanned",
                        param=where,
                        hint="upload the file through the gateway (files.create or uploads) and use the id it returns",
                    )
                _check_purpose(ref, item, where)
                found[where] = {
                    "file_id": value,
                    "decision": item.decision,
                    "input_sha256": item.input_sha256,
                    "output_sha256": item.output_sha256,
                    "records": item.records,
                    "classification": item.classification,
                }
                admitted.append(item)
        ex.audit["files"] = found
        for item in admitted:
            self.check_residency(ex, item.classification)
        return admitted

    # -- forwarding ---------------------------------------------------------------------------------
    def upstream_headers(self, ex: Exchange, content_type: str | None = None) -> list[tuple[str, str]]:
        headers = list(ex.headers)
        if content_type is not None:
            headers.append(("content-type", content_type))
        idem = ex.consumed.get("idempotency-key")
        if idem is not None:
            # the gateway's own key, derived from the client's: a retry forwards with the same key
            headers.append(
                ("idempotency-key", "bastion-" + hashlib.sha256(f"{ex.fingerprint}|{idem}".encode()).hexdigest()[:40])
            )
        return headers

    async def send(
        self,
        ex: Exchange,
        *,
        method: str | None = None,
        path: str | None = None,
        query: list[tuple[str, str]] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        content_type: str | None = None,
        content_length: int | None = None,
    ) -> UpstreamReply:
        """Send one request upstream (written by the gateway) with the route's auth strategy."""
        if not ex.forwarded:
            await self.audit.ensure_available()  # fail closed: nothing goes out while the audit log is down
        ex.forwarded = True
        body_sent = [content is None or isinstance(content, bytes)]
        if content is not None and not isinstance(content, bytes):
            content = _tracked(content, body_sent)
        reply: UpstreamReply | None = None

        async def forward() -> UpstreamReply:
            return await ex.upstream.send(
                method or ex.route.method,
                path if path is not None else ex.path,
                query=ex.query if query is None else query,
                headers=self.upstream_headers(ex, content_type),
                content=content,
                content_length=content_length,
                auth=ex.auth,
                host=ex.route.host,
            )

        try:
            if content is None:
                reply = await forward()
            else:
                reply = await _unless_disconnected(ex.request, forward)
        except Refusal as exc:
            if exc.extra.get("nothing_sent"):
                ex.forwarded = False
            raise
        if reply is None:
            # the client went away: the unfinished forward was stopped (an incomplete body is never processed)
            ex.forwarded = body_sent[0]
            raise Refusal(
                499,
                "client_disconnected",
                "the client closed the connection; the forward was stopped"
                + (" after the whole request was sent" if body_sent[0] else " before the request was complete"),
                extra={"nothing_sent": True} if not body_sent[0] else None,
            )
        self.metrics.upstream_latency.labels(ex.upstream_name, ex.route.name).observe(reply.latency)
        return reply

    async def relay(
        self, ex: Exchange, reply: UpstreamReply, decision: str, *, buffer: bool = False, **audit: Any
    ) -> Response:
        """The upstream's answer to the client (errors masked), after the outcome is durable."""
        resp = reply.response
        status = resp.status_code
        length = resp.headers.get("content-length", "")
        small = length.isdigit() and int(length) <= SMALL_RESPONSE
        fits = length.isdigit() and int(length) <= MAX_RESPONSE
        issues = ex.route.issued is not None and 200 <= status < 300 and (buffer or fits)
        if status >= 400 or small or buffer or issues:
            raw = await read_limited(resp, MAX_RESPONSE, f"route {ex.route.name}")
            if issues:
                await self._note_issued_in(ex, raw)
            if status >= 400:
                raw = await anyio.to_thread.run_sync(self.mask, raw)
                code = _json_path(raw, "error", "code")
                audit["upstream_error"] = code if isinstance(code, str) and code.isidentifier() else None
            await self.record(ex, decision, status=status, **audit)
            self.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
            return self.buffered_response(status, raw, resp.headers)
        await self.record(ex, decision, status=status, **audit)
        self.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
        out = StreamingResponse(resp.aiter_raw(), status_code=status)
        out.raw_headers = client_response_headers(resp.headers)

        async def _close() -> None:
            await resp.aclose()

        out.background = BackgroundTask(_close)
        return out

    async def once(self, ex: Exchange, request_digest: str, run: Callable[[], Awaitable[Response]]) -> Response:
        """Forward at most once per Idempotency-Key, and per SDK retry of the same request.

        With an ``Idempotency-Key`` (consumed, never forwarded as sent), or on an SDK retry
        (``x-stainless-retry-count`` > 0) of a request whose digest the gateway saw from this client on this
        route: a finished earlier attempt is replayed, one in progress answers 409, the same key for another
        request 422. A first attempt registers itself so that its retries find it.
        """
        key = ex.consumed.get("idempotency-key")
        retry = ex.request.headers.get("x-stainless-retry-count", "0")
        is_retry = retry.isdigit() and int(retry) > 0
        scope = f"{ex.upstream_name}:{ex.fingerprint}:{ex.route.name}" + ("" if key is not None else ":same-request")
        key_digest = hashlib.sha256((key if key is not None else request_digest).encode()).hexdigest()
        state = self.state
        begin = await anyio.to_thread.run_sync(state.idempotency_begin, scope, key_digest, request_digest)
        if key is None and not is_retry and not begin.proceed:
            # a new request (not a retry) equal to an earlier one: forwarded; its retries find the earlier answer
            return await run()
        if begin.replay:
            ex.audit["idempotency"] = "replay"
            await self.record(ex, "replay", event="idempotent_replay", status=begin.status)
            replayed = Response(begin.body or b"", status_code=begin.status or 200)
            replayed.raw_headers = [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in begin.headers if k.lower() == "content-type"
            ] + [(b"content-length", str(len(begin.body or b"")).encode())]
            return replayed
        if begin.in_progress:
            raise Refusal(
                409,
                "request_in_progress",
                f"the same {ex.route.name} request is being forwarded now; this retry is not forwarded again",
                hint="retry a little later: the finished answer is then returned",
            )
        if begin.mismatch:
            raise Refusal(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was used for a different request",
                hint="use a new Idempotency-Key for a new request",
            )
        try:
            resp = await run()
        except BaseException as exc:
            if ex.forwarded and not (isinstance(exc, Refusal) and exc.extra.get("nothing_sent")):
                # bytes may have reached the upstream: a retry must not forward again
                refusal = exc if isinstance(exc, Refusal) else Refusal(502, "upstream_error", "forward failed")
                note = Refusal(
                    refusal.status,
                    refusal.kind,
                    "an earlier attempt of this request may have reached the upstream without an answer; "
                    "it is not forwarded again",
                    hint="check with a list call (files, jobs) before sending it as a new request",
                )
                ctype, body = self.error_response_body(ex.spec, note)
                await anyio.to_thread.run_sync(
                    state.idempotency_finish, scope, key_digest, refusal.status, [("content-type", ctype)], body
                )
            else:
                await anyio.to_thread.run_sync(state.idempotency_abandon, scope, key_digest)
            raise
        if resp.status_code >= 500 or isinstance(resp, StreamingResponse):
            await anyio.to_thread.run_sync(state.idempotency_abandon, scope, key_digest)  # a retry may forward
        else:
            ctype = resp.headers.get("content-type", "application/json")
            await anyio.to_thread.run_sync(
                state.idempotency_finish,
                scope,
                key_digest,
                resp.status_code,
                [("content-type", ctype)],
                bytes(resp.body),
            )
        return resp

    def error_response_body(self, spec: ProviderSpec, refusal: Refusal) -> tuple[str, bytes]:
        return (spec.errors or json_error)(refusal)

    def mask(self, raw: bytes) -> bytes:
        """An upstream error body with personal data redacted (it may echo what the client sent)."""
        try:
            doc = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            text = raw.decode("utf-8", "replace")
            res = self.engine.scan_record(text, 0)
            return str(res.record).encode() if res.changed else raw
        res = self.engine.scan_record(doc, 0)
        return json.dumps(res.record).encode() if res.changed else raw

    def buffered_response(self, status: int, body: bytes, headers: Any) -> Response:
        """A response from an upstream answer that the gateway had to read (decoded) first."""
        out = Response(body, status_code=status)
        kept = client_response_headers(httpx.Headers(headers), drop=("content-length", "content-encoding"))
        out.raw_headers = [*kept, (b"content-length", str(len(body)).encode())]
        return out

    # -- audit ----------------------------------------------------------------------------------------
    async def record(self, ex: Exchange, decision: str, *, wait: bool = True, **data: Any) -> None:
        outcome: Outcome = data.pop("outcome", None) or (FORWARDED if ex.forwarded else REFUSED_BEFORE_FORWARDING)
        entry = {
            "decision": decision,
            "client": ex.fingerprint,
            "method": ex.route.method,
            "route": ex.route.name,
            "ids": ex.ids,
            "upstream": ex.upstream_name,
            "upstream_url": ex.upstream.config.base_url,
            "policy": self.policy_name,
            **ex.audit,
            **data,
        }
        await self.audit.record(entry, outcome=outcome, wait=wait)

    # -- request handling ---------------------------------------------------------------------------
    def error_response(self, spec: ProviderSpec, refusal: Refusal) -> Response:
        encoder = spec.errors or json_error
        ctype, body = encoder(refusal)
        return Response(body, status_code=refusal.status, media_type=ctype)

    async def _refuse_unrouted(
        self, request: Request, reason: str, refusal: Refusal, *, spec: ProviderSpec | None = None, **facts: Any
    ) -> Response:
        """Refuse a request that matched no route; in the upstream's error shape where it is known."""
        entry = {
            "decision": "block",
            "reason": reason,
            "client": client_fingerprint(request.headers),
            "method": request.method if request.method in _METHODS else "(other)",
            "route": None,
            "path_sha256": digest(request.url.path),
            "policy": self.policy_name,
            **facts,
        }
        self.metrics.requests.labels("-", "-", "block").inc()
        try:
            await self.audit.record(entry, outcome="refused_before_forwarding")
        except Exception:
            self.metrics.audit_failures.inc()
            refusal = _audit_refusal(forwarded=False)
        return self.error_response(spec or self._fallback, refusal)

    async def handle(self, request: Request) -> Response:
        name = request.path_params["upstream"]
        path = "/" + request.path_params.get("path", "")
        upstream = self.upstreams.get(name)
        if upstream is None:
            return await self._refuse_unrouted(
                request,
                "unknown_upstream",
                Refusal(
                    404,
                    "unknown_upstream",
                    "no upstream of that name is configured on this gateway",
                    hint=f"configured upstreams: {', '.join(sorted(self.upstreams))} "
                    "(use base_url http://<gateway>/<upstream>/v1)",
                ),
                requested_upstream_sha256=digest(name),
            )
        spec = self.specs[name]
        raw_headers = request.scope["headers"]
        try:
            inbound.check_framing(raw_headers)
        except Refusal as refused:
            return await self._refuse_unrouted(request, refused.kind, refused, spec=spec, upstream=name)
        segments = path.split("/")[1:]
        matched = None
        if not (any(seg in (".", "..") for seg in segments) or "" in segments[:-1] or any(c in path for c in "?#\\")):
            # dot segments, empty segments or decoded '?', '#', '\\' could make the upstream see a different
            # route than the one classified here: refuse instead of normalising
            keys = frozenset(k for k, _ in request.query_params.multi_items())
            matched = spec.match(request.method, path, keys)
        if matched is None:
            return await self._refuse_unrouted(
                request,
                "route_not_allowed",
                Refusal(
                    403,
                    "route_not_allowed",
                    f"this is not a route the gateway knows for {spec.name}; unknown routes are denied",
                    hint="ask the gateway operator to add support for it",
                ),
                spec=spec,
                upstream=name,
            )
        route = matched.route
        ex = Exchange(request, upstream, spec, route, client_fingerprint(request.headers))
        try:
            allowed_clients = self.settings.allowed_clients
            if allowed_clients is not None and not route.capability and ex.fingerprint not in allowed_clients:
                raise Refusal(
                    401,
                    "client_not_allowed",
                    "this gateway does not accept the credentials sent with the request",
                    hint=f"ask the gateway operator to add your fingerprint ({ex.fingerprint}) to allowed_clients",
                )
            if not self.allowed(spec, route):
                raise Refusal(
                    403,
                    "route_not_allowed",
                    route.refused or f"route {route.name} is not on this gateway's allow list",
                    hint="the gateway operator can add it to gateway.allow_routes",
                )
            if route.download and not self.settings.allow_downloads:
                raise Refusal(
                    403,
                    "download_not_allowed",
                    f"downloads ({route.name}) are denied by this gateway's policy",
                    hint="the gateway operator can set gateway.allow_downloads",
                )
            try:
                ex.ids = inbound.check_ids(spec, matched, self.engine)
            except Refusal as exc:  # an id the policy reads as personal data: a file we admitted, a job's number?
                known = await self._known_among(ex, matched.params.values()) if exc.kind == "invalid_id" else None
                if not known:
                    raise
                ex.ids = inbound.check_ids(spec, matched, self.engine, opaque=known)
                # the audit says which values the policy flagged went out because the upstream (or the
                # operator's own_ids) named them, and what the scan took them for
                ex.audit["known_ids"] = {
                    "params": sorted(k for k, v in matched.params.items() if v in known),
                    "entity_types": exc.details.entity_types,
                }
            try:
                ex.query = inbound.check_query(spec, matched, request.url.query, self.engine)
            except Refusal as exc:  # a cursor the policy reads as personal data: an id the upstream gave out?
                scanned = exc.kind == "invalid_query" and exc.details.entity_types
                known = await self._known_among(ex, _query_values(request.url.query)) if scanned else None
                if not known:
                    raise
                ex.query = inbound.check_query(spec, matched, request.url.query, self.engine, opaque=known)
                ex.audit["known_query"] = {
                    "params": sorted({k for k, v in ex.query if v in known}),
                    "entity_types": exc.details.entity_types,
                }
            checked = inbound.check_headers(spec, matched, request.headers.items(), self.engine)
            ex.headers, ex.consumed = checked.forward, checked.consumed
            if route.body == "none":
                inbound.check_no_body(raw_headers, route.name)
            credential = inbound.client_credential(spec, request.headers)
            held = self._held[name]
            if held is not None:
                ex.auth = held
            elif credential is not None:
                ex.auth = held_key_auth(credential[0], credential[1])
            if route.step == "forward":
                return await self.forward(ex)
            return await spec.steps[route.step](self, ex)
        except Refusal as refused:
            return await self._refused(ex, refused)
        except AuditUnavailable:
            self.metrics.audit_failures.inc()
            return self.error_response(spec, _audit_refusal(forwarded=ex.forwarded))
        except StateError as exc:
            log.error("state store failure on %s: %s", route.name, type(exc).__name__)
            return await self._refused(
                ex,
                Refusal(
                    503,
                    "state_unavailable",
                    "the gateway's state store cannot be used right now"
                    + ("; the request may have reached the upstream" if ex.forwarded else "; nothing was forwarded"),
                    hint="retry later; the gateway operator can see the cause in the gateway's log",
                ),
            )
        except Exception as exc:  # fail closed; never a traceback (or data) to the client or the log
            log.error("internal error on %s: %s", route.name, type(exc).__name__)
            internal = Refusal(
                500,
                "internal_error",
                f"the gateway failed while handling {route.name} ({type(exc).__name__})"
                + ("" if ex.forwarded else "; nothing was forwarded"),
                hint="the gateway operator can find the audit entry for this request",
            )
            return await self._refused(ex, internal)

    async def forward(self, ex: Exchange) -> Response:
        """The generic step: a body-less request, or a JSON body decoded strictly and scanned."""
        if ex.route.body == "none":
            if ex.route.method != "GET":  # a state change upstream: its decision is durable first
                await self.record(ex, "allow", event="decision")
            reply = await self.send(ex)
            return await self.relay(ex, reply, "allow", event="upstream_response")
        if ex.route.body != "json":  # pragma: no cover - a spec error: such routes need a step
            raise Refusal(500, "internal_error", f"route {ex.route.name} has no step for its body")
        scan = await self.scan_json_body(ex, f"{ex.route.name} request")
        decision = "redact" if scan.changed else "allow"
        if scan.classification is not None:
            self.check_residency(ex, scan.classification)

        async def run() -> Response:
            await self.record(ex, decision, event="decision")
            reply = await self.send(ex, content=scan.body, content_type="application/json")
            if 200 <= reply.response.status_code < 300:
                raw = await read_limited(reply.response, MAX_RESPONSE, f"route {ex.route.name}")
                created = _json_path(raw, "id")
                safe = isinstance(created, str) and len(created) <= 128 and created.isprintable()
                await self.record(
                    ex,
                    decision,
                    event="upstream_response",
                    status=reply.response.status_code,
                    object_id=created if safe else None,
                )
                if ex.route.issued is not None:
                    await self._note_issued_in(ex, raw)
                self.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
                return self.buffered_response(reply.response.status_code, raw, reply.response.headers)
            return await self.relay(ex, reply, decision, event="upstream_response", buffer=True)

        digest_of = hashlib.sha256(f"{ex.route.name}|{ex.path}|".encode() + scan.body).hexdigest()
        return await self.once(ex, digest_of, run)

    async def _refused(self, ex: Exchange, refusal: Refusal) -> Response:
        self.metrics.requests.labels(ex.upstream_name, ex.route.name, "block").inc()
        d = refusal.details
        try:
            await self.record(
                ex,
                "block",
                outcome="forwarded_no_answer" if ex.forwarded else "refused_before_forwarding",
                reason=refusal.kind,
                status=refusal.status,
                rule_ids=d.rule_ids,
                blocked_records=d.records[:1000],
                blocked_entity_types=d.entity_types,
                param=refusal.param
                if refusal.param and refusal.param.isprintable() and len(refusal.param) <= 64
                else None,
                **{k: v for k, v in refusal.extra.items() if k != "nothing_sent"},
            )
        except Exception as exc:
            self.metrics.audit_failures.inc()
            log.error("audit log append failed: %s", type(exc).__name__)
            refusal = _audit_refusal(forwarded=ex.forwarded)
        return self.error_response(ex.spec, refusal)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "upstreams": sorted(self.upstreams)})

    def _build_app(self) -> Starlette:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            if self.engine.blocking:  # load the policy's models now, not on the first upload
                await anyio.to_thread.run_sync(self.engine.warm_up)
            try:
                yield
            finally:
                await self.aclose()

        return Starlette(
            routes=[
                StarletteRoute("/metrics", self.metrics_endpoint, methods=["GET"]),
                StarletteRoute("/healthz", self.healthz, methods=["GET"]),
                StarletteRoute("/{upstream}/{path:path}", self.handle, methods=list(_METHODS)),
                StarletteRoute("/{upstream}", self.handle, methods=list(_METHODS)),
            ],
            lifespan=lifespan,
        )

    async def aclose(self) -> None:
        for up in self.upstreams.values():
            await up.aclose()
        await anyio.to_thread.run_sync(self.audit.close)
        if self.engine.blocking:
            await anyio.to_thread.run_sync(self.engine.close)
        self.state.close()


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


def _audit_refusal(*, forwarded: bool) -> Refusal:
    return Refusal(
        503,
        "audit_unavailable",
        "the gateway cannot write its audit log, so it does not answer as if the request were audited"
        + ("; the request may have reached the upstream" if forwarded else "; nothing was forwarded"),
        hint="retry later; the gateway operator must fix the audit log's disk",
    )


async def _unless_disconnected(request: Request, run: Callable[[], Awaitable[UpstreamReply]]) -> UpstreamReply | None:
    """``run()``, cancelled when the client disconnects (its body was already read): None then."""
    result: list[UpstreamReply] = []

    async def main(scope: anyio.CancelScope) -> None:
        result.append(await run())
        scope.cancel()

    async def watch(scope: anyio.CancelScope) -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                scope.cancel()
                return

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(main, tg.cancel_scope)
            tg.start_soon(watch, tg.cancel_scope)
    except BaseExceptionGroup as group:
        first = group.exceptions[0]
        raise first from None
    return result[0] if result else None


async def _tracked(content: AsyncIterator[bytes], done: list[bool]) -> AsyncIterator[bytes]:
    """``content``, noting in ``done[0]`` when its last byte was handed to the transport."""
    async for chunk in content:
        yield chunk
    done[0] = True


def _check_purpose(ref: FileRef, item: Admitted, where: str) -> None:
    if ref.purposes and item.purpose not in ref.purposes:
        raise Refusal(
            403,
            "unscanned_file",
            f"{where} names a file admitted for another purpose; expected one of {', '.join(ref.purposes)}",
            param=where,
            hint="upload the file with the purpose this field needs",
        )


def _own_pairs(raw: bytes, own_ids: Sequence[str]) -> frozenset[tuple[str, str]]:
    try:
        doc = jsonbody.plain(jsonbody.loads(raw))
    except Refusal:  # the scan refuses it with the reason
        return frozenset()
    return frozenset(string_paths(doc, own_ids))


def _query_values(query_string: str) -> list[str]:
    try:
        return [v for _, v in parse_qsl(query_string, keep_blank_values=True)]
    except ValueError:
        return []


def _issued_digest(value: str) -> str:
    """How an issued id is kept: its sha256 (a job ARN holds the job's name, which the state keeps no copy of)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _issued_in(route: RouteSpec, raw: bytes) -> list[str]:
    """The ids ``route.issued`` finds in a JSON answer (none in one that is not JSON)."""
    assert route.issued is not None
    try:
        doc: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return []
    return [value for value in route.issued(doc) if isinstance(value, str)]


def _json_path(raw: bytes, *keys: str) -> Any:
    try:
        doc: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    for key in keys:
        if not isinstance(doc, dict):
            return None
        doc = doc.get(key)
    return doc


def create_app(config: GatewayConfig, policy: Any, *, policy_name: str | None = None) -> ASGIApp:
    """The gateway's ASGI app for ``config`` and a loaded policy (``bastion.policies.load_policy``)."""
    return create_gateway(config, policy, policy_name=policy_name).app


def create_gateway(
    config: GatewayConfig,
    policy: Any,
    *,
    policy_name: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Gateway:
    """A gateway; ``transport`` replaces the network (httpx.MockTransport / an ASGI app in tests)."""
    from bastion.policies import PolicyEngine

    engine = PolicyEngine(policy)
    name = policy_name or str(getattr(policy, "source", None) or getattr(policy, "name", "<policy>"))
    return Gateway(config, engine, policy_name=name, transport=transport)
