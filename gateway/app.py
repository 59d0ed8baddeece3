"""The gateway: a Starlette app that routes ``/<upstream>/<path>`` to the configured upstream.

Per request: find the upstream (unknown -> refused), let its adapter classify the route (unknown
route -> refused; default deny), then either

- forward it unchanged (pass-through route on the allow list), streaming both ways, or
- hand it to the adapter's training-data handler, which scans the upload as it streams in, spools the
  rewritten records to disk and forwards only after the whole upload was scanned and admitted.

Everything that goes wrong fails closed: the request is refused with the provider's error shape,
the refusal is audited, and nothing unscanned reaches the upstream.
"""

from __future__ import annotations

import contextlib
import json
import logging
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute
from starlette.types import ASGIApp

from bastion.adapters import Adapter, get_adapter
from bastion.adapters.base import Route
from bastion.errors import BastionError
from bastion.gateway.audit import AuditLog, client_fingerprint
from bastion.gateway.config import GatewayConfig, GatewaySettings
from bastion.gateway.errors import Refusal
from bastion.gateway.filemap import FileMap
from bastion.gateway.metrics import CONTENT_TYPE_LATEST, GatewayMetrics
from bastion.gateway.proxy import Upstream, client_response_headers, upstream_request_headers

log = logging.getLogger("bastion.gateway")

SCAN_BATCH = 1024 * 1024
SMALL_RESPONSE = 256 * 1024
_GENERIC_ADAPTER = "openai"


@dataclass
class Exchange:
    """One client request as it moves through the gateway, plus what the audit entry will say."""

    request: Request
    upstream: Upstream
    adapter: Adapter
    route: Route
    path: str
    fingerprint: str
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def upstream_name(self) -> str:
        return self.upstream.name


class Gateway:
    """Shared services of one gateway instance: config, policy engine, upstreams, audit, metrics."""

    def __init__(self, config: GatewayConfig, engine: Any, *, policy_name: str = "<policy>") -> None:
        self.config = config
        self.settings: GatewaySettings = config.gateway
        self.engine = engine
        self.policy_name = policy_name
        self.metrics = GatewayMetrics()
        self.settings.state_dir.mkdir(parents=True, exist_ok=True)
        self.audit = AuditLog(self.settings.audit_path)
        self.filemap = FileMap(self.settings.state_dir / "files.sqlite3")
        self.upstreams: dict[str, Upstream] = {
            name: Upstream(name, cfg, max_connections=self.settings.max_connections)
            for name, cfg in config.upstreams.items()
        }
        self.adapters: dict[str, Adapter] = {name: get_adapter(config.adapter_name(name)) for name in config.upstreams}
        # Provider keys are read once at start so a missing env var fails at start, not per request.
        self._keys: dict[str, str | None] = {name: config.provider_key(name) for name in config.upstreams}
        self._fallback_adapter = get_adapter(_GENERIC_ADAPTER)
        for name, adapter in self.adapters.items():
            allowed = set(self.settings.allow_routes)
            unknown = allowed - adapter.routes.names
            if unknown and len(self.adapters) == 1:
                from bastion.errors import ConfigError

                raise ConfigError(
                    f"gateway.allow_routes names route(s) the {name!r} adapter does not know: "
                    + ", ".join(sorted(unknown)),
                    hint="known routes: " + ", ".join(sorted(adapter.routes.names)),
                )
        self.app = self._build_app()

    # -- services used by adapters ------------------------------------------------------------------
    def upstream_headers(self, ex: Exchange, *, drop: tuple[str, ...] = ()) -> list[tuple[str, str]]:
        return upstream_request_headers(
            ex.request.headers.items(), provider_key=self._keys[ex.upstream_name], drop=("content-encoding", *drop)
        )

    def allowed(self, adapter: Adapter, route: Route) -> bool:
        allow = set(self.settings.allow_routes) if self.settings.allow_routes else adapter.default_allowed_routes
        return route.name in allow

    async def decoded_body(self, ex: Exchange, limit: int) -> AsyncIterator[bytes]:
        """The request body, Content-Encoding (gzip/deflate) decoded, at most ``limit`` decoded bytes.

        Raw and decoded sizes are both capped (a small gzip bomb cannot inflate past the limit).
        Any other encoding is refused: an upload the gateway cannot read is never forwarded.
        """
        enc = ex.request.headers.get("content-encoding", "").strip().lower()
        if enc in ("", "identity"):
            dec = None
        elif enc in ("gzip", "x-gzip", "deflate"):
            dec = zlib.decompressobj(wbits=47 if enc != "deflate" else 15)
        else:
            raise Refusal(
                415,
                "unsupported_content_encoding",
                f"request Content-Encoding {enc!r} is not supported by the gateway",
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

    async def read_json(self, ex: Exchange) -> Any:
        buf = bytearray()
        async for chunk in self.decoded_body(ex, self.settings.max_json_body_bytes):
            buf += chunk
        try:
            return json.loads(bytes(buf))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise Refusal(
                400, "invalid_json", f"the request body is not valid JSON ({exc.__class__.__name__})"
            ) from None

    def check_residency(self, ex: Exchange, classification: str | None) -> dict[str, Any]:
        jurisdiction = ex.upstream.config.jurisdiction
        try:
            res = self.engine.check_residency(ex.upstream_name, jurisdiction, classification)
        except BastionError as exc:
            raise Refusal(
                403,
                "residency",
                f"residency check for upstream {ex.upstream_name!r} failed: {exc.message}",
                hint=exc.hint,
            ) from None
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

    async def record(self, ex: Exchange, decision: str, *, wait: bool = True, **data: Any) -> None:
        entry = {
            "decision": decision,
            "client": ex.fingerprint,
            "method": ex.request.method,
            "route": ex.route.name,
            "path": ex.path,
            "upstream": ex.upstream_name,
            "upstream_url": ex.upstream.config.base_url,
            "policy": self.policy_name,
            **ex.audit,
            **data,
        }
        await self.audit.record(entry, wait=wait)

    # -- request handling ---------------------------------------------------------------------------
    def error_response(self, adapter: Adapter, refusal: Refusal) -> JSONResponse:
        return JSONResponse(adapter.error_body(refusal), status_code=refusal.status)

    async def _refuse_unrouted(self, request: Request, upstream: str, path: str) -> Response:
        refusal = Refusal(
            404,
            "unknown_upstream",
            f"no upstream named {upstream!r} is configured on this gateway",
            hint=f"configured upstreams: {', '.join(sorted(self.upstreams))} (use base_url http://<gateway>/<upstream>/v1)",
        )
        entry = {
            "decision": "block",
            "reason": refusal.kind,
            "client": client_fingerprint(request.headers),
            "method": request.method,
            "route": None,
            "path": path,
            "upstream": None,
            "requested_upstream": upstream[:64],
            "policy": self.policy_name,
        }
        self.metrics.requests.labels("-", "-", "block").inc()
        try:
            await self.audit.record(entry)
        except Exception:
            self.metrics.audit_failures.inc()
            refusal = Refusal(500, "audit_failed", "the gateway could not write its audit log; nothing was forwarded")
        return self.error_response(self._fallback_adapter, refusal)

    async def handle(self, request: Request) -> Response:
        name = request.path_params["upstream"]
        path = "/" + request.path_params.get("path", "")
        upstream = self.upstreams.get(name)
        if upstream is None:
            return await self._refuse_unrouted(request, name, path)
        adapter = self.adapters[name]
        segments = path.split("/")[1:]
        if any(seg in (".", "..") for seg in segments) or "" in segments[:-1] or any(c in path for c in "?#\\"):
            # dot segments, empty segments or decoded '?', '#', '\\' could make the upstream see a different
            # route than the one classified here: refuse instead of normalising
            route = Route("unknown", "passthrough")
        else:
            route = adapter.classify(request.method, path) or Route("unknown", "passthrough")
        ex = Exchange(request, upstream, adapter, route, path, client_fingerprint(request.headers))
        try:
            allowed_clients = self.settings.allowed_clients
            if allowed_clients is not None and ex.fingerprint not in allowed_clients:
                raise Refusal(
                    401,
                    "client_not_allowed",
                    "this gateway does not accept the credentials sent with the request",
                    hint=f"ask the gateway operator to add your fingerprint ({ex.fingerprint}) to allowed_clients",
                )
            if route.name == "unknown":
                raise Refusal(
                    403,
                    "route_not_allowed",
                    f"{request.method} {path} is not a route this gateway knows for {adapter.name}; "
                    "unknown routes are denied",
                    hint="ask the gateway operator to add support for it",
                )
            if route.kind == "passthrough":
                if not self.allowed(adapter, route):
                    raise Refusal(
                        403,
                        "route_not_allowed",
                        f"route {route.name} ({request.method} {path}) is not on this gateway's allow list",
                        hint="the gateway operator can add it to gateway.allow_routes",
                    )
                return await self.passthrough(ex)
            return await adapter.handle(self, ex)
        except Refusal as refused:
            return await self._refused(ex, refused)
        except Exception as exc:  # fail closed; never a traceback (or data) to the client or the log
            log.error("internal error on %s %s: %s", request.method, route.name, type(exc).__name__)
            internal = Refusal(
                500,
                "internal_error",
                f"the gateway failed while handling {route.name} ({type(exc).__name__}); nothing was forwarded",
                hint="the gateway operator can find the audit entry for this request",
            )
            return await self._refused(ex, internal)

    async def _refused(self, ex: Exchange, refusal: Refusal) -> Response:
        self.metrics.requests.labels(ex.upstream_name, ex.route.name, "block").inc()
        d = refusal.details
        try:
            await self.record(
                ex,
                "block",
                reason=refusal.kind,
                status=refusal.status,
                message=refusal.message,
                rule_ids=d.rule_ids,
                blocked_records=d.records[:1000],
                blocked_entity_types=d.entity_types,
                **refusal.extra,
            )
        except Exception as exc:
            self.metrics.audit_failures.inc()
            log.error("audit log append failed: %s", type(exc).__name__)
            refusal = Refusal(500, "audit_failed", "the gateway could not write its audit log; nothing was forwarded")
        return self.error_response(ex.adapter, refusal)

    async def passthrough(self, ex: Exchange) -> Response:
        req = ex.request
        length = req.headers.get("content-length")
        has_body = length not in (None, "0") or "transfer-encoding" in req.headers
        headers = upstream_request_headers(req.headers.items(), provider_key=self._keys[ex.upstream_name])
        reply = await ex.upstream.send(
            req.method,
            ex.path,
            query=req.url.query,
            headers=headers,
            content=req.stream() if has_body else None,
            content_length=int(length) if length and length.isdigit() else None,
            route=ex.route.name,
        )
        self.metrics.upstream_latency.labels(ex.upstream_name, ex.route.name).observe(reply.latency)
        self.metrics.requests.labels(ex.upstream_name, ex.route.name, "allow").inc()
        await self.record(ex, "allow", wait=False, status=reply.response.status_code)
        resp = reply.response
        length = resp.headers.get("content-length", "")
        if length.isdigit() and int(length) <= SMALL_RESPONSE:
            # small answers (listings, job status): one read, no streaming machinery
            try:
                raw = b"".join([c async for c in resp.aiter_raw()])
            except httpx.HTTPError as exc:
                raise Refusal(
                    502, "upstream_error", f"reading the upstream's answer failed ({type(exc).__name__})"
                ) from None
            finally:
                await resp.aclose()
            small = Response(raw, status_code=resp.status_code)
            small.raw_headers = client_response_headers(resp.headers)
            return small
        out = StreamingResponse(resp.aiter_raw(), status_code=resp.status_code, background=None)
        out.raw_headers = client_response_headers(resp.headers)

        async def _close() -> None:
            await resp.aclose()

        from starlette.background import BackgroundTask

        out.background = BackgroundTask(_close)
        return out

    def buffered_response(self, status: int, body: bytes, headers: Any) -> Response:
        """A response from an upstream answer that the gateway had to read (decoded) first."""
        out = Response(body, status_code=status)
        kept = client_response_headers(headers, drop=("content-length", "content-encoding"))
        out.raw_headers = [*kept, (b"content-length", str(len(body)).encode())]
        return out

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "upstreams": sorted(self.upstreams)})

    def _build_app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            try:
                yield
            finally:
                await self.aclose()

        return Starlette(
            routes=[
                StarletteRoute("/metrics", self.metrics_endpoint, methods=["GET"]),
                StarletteRoute("/healthz", self.healthz, methods=["GET"]),
                StarletteRoute("/{upstream}/{path:path}", self.handle, methods=methods),
                StarletteRoute("/{upstream}", self.handle, methods=methods),
            ],
            lifespan=lifespan,
        )

    async def aclose(self) -> None:
        for up in self.upstreams.values():
            await up.aclose()
        await anyio.to_thread.run_sync(self.audit.close)
        self.filemap.close()


def create_app(
    config: GatewayConfig,
    policy: Any,
    *,
    policy_name: str | None = None,
) -> ASGIApp:
    """The gateway's ASGI app for ``config`` and a loaded policy (``bastion.policies.load_policy``)."""
    return create_gateway(config, policy, policy_name=policy_name).app


def create_gateway(config: GatewayConfig, policy: Any, *, policy_name: str | None = None) -> Gateway:
    from bastion.policies import PolicyEngine

    engine = PolicyEngine(policy)
    name = policy_name or str(getattr(policy, "source", None) or getattr(policy, "name", "<policy>"))
    return Gateway(config, engine, policy_name=name)


def state_path(settings: GatewaySettings, name: str) -> Path:
    return settings.state_dir / name
