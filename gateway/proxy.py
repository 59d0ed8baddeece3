"""Forwarding to upstreams with httpx: pooled connections, timeouts, streaming both ways.

Header handling follows RFC 9110 §7.6.1: hop-by-hop headers (``Connection`` and every header it
names, ``Keep-Alive``, ``TE``, ``Trailer``, ``Transfer-Encoding``, ``Upgrade``, ``Proxy-*``) are
not forwarded in either direction; ``Host`` and ``Content-Length`` are set for the upstream request.
Request headers are not copied at all: the gateway writes them (``bastion.gateway.inbound``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import httpx

from bastion.gateway.config import UpstreamConfig
from bastion.gateway.errors import Refusal
from bastion.gateway.spec import apply_auth

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


def _connection_tokens(headers: Iterable[tuple[str, str]]) -> set[str]:
    tokens: set[str] = set()
    for name, value in headers:
        if name.lower() == "connection":
            tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def client_response_headers(upstream: httpx.Headers, *, drop: Iterable[str] = ()) -> list[tuple[bytes, bytes]]:
    items = list(upstream.multi_items())
    skip = set(HOP_BY_HOP) | _connection_tokens(items) | {d.lower() for d in drop}
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in items if k.lower() not in skip]


@dataclass
class UpstreamReply:
    response: httpx.Response
    latency: float


class Upstream:
    """One configured upstream: its hosts (base URLs), jurisdiction and a pooled httpx transport.

    Requests go straight to the transport (httpx's connection pool by default; tests inject an
    ``httpx.MockTransport`` or an ASGI transport): the gateway needs none of the client layer
    (cookies, redirects, URL/header merging), and skipping it roughly halves the CPU per request.
    Credentials are added by the route's auth strategy (an :class:`httpx.Auth` flow).
    """

    def __init__(
        self,
        name: str,
        config: UpstreamConfig,
        *,
        jurisdiction: str,
        max_connections: int = 200,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.config = config
        self.jurisdiction = jurisdiction.upper()
        self.hosts: dict[str, str] = {"api": config.base_url, **config.hosts}
        t = config.timeouts
        self.timeout = httpx.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.pool).as_dict()
        self._owned = transport is None
        self.transport: httpx.AsyncBaseTransport = transport or httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            trust_env=False,
        )

    def url(self, path: str, query: list[tuple[str, str]] | None = None, host: str = "api") -> httpx.URL:
        base = self.hosts.get(host)
        if base is None:
            raise Refusal(500, "internal_error", f"upstream {self.name!r} has no host {host!r} configured")
        url = httpx.URL(base + path)
        return url.copy_with(params=query) if query else url

    async def send(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        headers: list[tuple[str, str]],
        content: bytes | AsyncIterator[bytes] | None = None,
        content_length: int | None = None,
        auth: httpx.Auth | None = None,
        host: str = "api",
    ) -> UpstreamReply:
        """Send a request and return the response with its body not yet read (streaming)."""
        hdrs = list(headers)
        if isinstance(content, bytes):
            content_length = len(content)
        if content_length is not None:
            hdrs.append(("content-length", str(content_length)))
        request = httpx.Request(method, self.url(path, query, host), headers=hdrs, content=content)
        if content is None:
            request.headers.pop("content-length", None)
        request = apply_auth(auth, request)
        request.extensions["timeout"] = self.timeout
        started = time.perf_counter()
        try:
            response = await self.transport.handle_async_request(request)
            response.request = request
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Refusal(
                502 if isinstance(exc, httpx.ConnectError) else 504,
                "upstream_unreachable",
                f"the upstream {self.name!r} could not be reached ({type(exc).__name__}); nothing was forwarded",
                hint="check the upstream's base_url in the gateway's upstreams file and the network path to it",
                extra={"nothing_sent": True},
            ) from None
        except httpx.TimeoutException:
            raise Refusal(
                504,
                "upstream_timeout",
                f"the upstream {self.name!r} did not answer in time; the request may have reached it",
                hint="retry later with the same Idempotency-Key; if it persists, the operator can raise the timeouts",
            ) from None
        except httpx.HTTPError as exc:
            raise Refusal(
                502,
                "upstream_unreachable",
                f"the connection to upstream {self.name!r} failed ({type(exc).__name__}); "
                "the request may have reached it",
                hint="retry later with the same Idempotency-Key",
            ) from None
        return UpstreamReply(response, time.perf_counter() - started)

    async def aclose(self) -> None:
        if self._owned:
            await self.transport.aclose()


async def read_limited(response: httpx.Response, limit: int, what: str) -> bytes:
    """Read a (small) upstream response body, refusing one over ``limit`` bytes."""
    buf = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            buf += chunk
            if len(buf) > limit:
                raise Refusal(502, "upstream_error", f"the upstream's answer to {what} is larger than {limit} bytes")
    except httpx.HTTPError as exc:
        raise Refusal(
            502, "upstream_error", f"reading the upstream's answer to {what} failed ({type(exc).__name__})"
        ) from None
    finally:
        await response.aclose()
    return bytes(buf)
