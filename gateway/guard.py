"""Inbound limits in front of the gateway app: request-head and body-idle timeouts, a connection cap,
and Content-Length above the limit refused before a byte of the body is read.

uvicorn alone arms no timer until a first request has been parsed (a client that connects and then
sends its request head one byte at a time - slow-loris - holds a connection forever) and caps
concurrency only by answering 503 to *parsed* requests. :func:`guarded_protocol` subclasses uvicorn's
HTTP protocol (httptools when installed, else h11; both keep the per-request ``cycle`` the guard
watches) with:

- a **head timeout**: the request head must be complete within ``header_timeout_s`` of the connection
  being made (first request) or of its first byte (later requests on a kept-alive connection);
- a **body idle timeout**: while the app waits for more request body, ``body_idle_timeout_s`` without
  a byte closes the connection (not while the server itself paused reading for back-pressure);
- a **head size limit**: a request head longer than ``max_header_bytes`` gets a 431 and is closed
  (h11's own ``max_incomplete_event_size`` only applies while a head is still incomplete in its buffer);
- a **connection cap**: a connection beyond ``max_connections`` gets a 503 and is closed at once.

Idle kept-alive connections are closed by uvicorn's ``timeout_keep_alive``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, cast

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from bastion.gateway.errors import Refusal

logger = logging.getLogger("bastion.gateway.server")


def raw_response(status: int, reason: str, body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(data)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode() + data


def _error(status: int, code: str, message: str) -> dict[str, Any]:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class ProtocolGuard(asyncio.Protocol):
    """Mixed in before uvicorn's HTTP protocol: head/body-idle timeouts, head size, connection cap."""

    # provided by uvicorn's protocol classes
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    logger: logging.Logger
    connections: set[Any]
    cycle: Any
    flow: Any

    header_timeout_s: ClassVar[float] = 10.0
    body_idle_timeout_s: ClassVar[float] = 60.0
    max_connections: ClassVar[int] = 1000
    max_header_bytes: ClassVar[int] = 32 * 1024
    #: how long a connection refused with a final answer still reads (and drops) what the client sends
    linger_s: ClassVar[float] = 2.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        cast(Any, super()).__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._awaiting_head = True
        self._seen_cycle: object | None = None
        self._refused = False
        self._head_bytes = 0  # bytes of the current request head seen so far
        self._lingering = False  # a final answer was written; what arrives now is dropped
        self._linger_timer: asyncio.TimerHandle | None = None
        self._head_tail = b""  # the last 3 bytes, to find a CRLFCRLF split across reads

    # -- timers ----------------------------------------------------------------------------------------
    def _cancel(self, timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()

    def _arm_head(self) -> None:
        self._cancel(self._head_timer)
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._awaiting_head and not self.transport.is_closing():
            self.logger.warning("closing a connection whose request head did not arrive in time")
            msg = f"the request head did not arrive within {self.header_timeout_s:g} s; the connection is closed"
            self._answer_and_close(raw_response(408, "Request Timeout", _error(408, "request_timeout", msg)))

    def _arm_body(self) -> None:
        self._cancel(self._body_timer)
        self._body_timer = self.loop.call_later(self.body_idle_timeout_s, self._body_timed_out)

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_complete or self.transport.is_closing():
            return
        if self.flow.read_paused:  # we stopped reading (back-pressure): not the client's delay
            self._arm_body()
            return
        self.logger.warning("closing a connection whose request body stalled")
        if not cycle.response_started:
            msg = f"no request body bytes arrived for {self.body_idle_timeout_s:g} s; the connection is closed"
            self._answer_and_close(raw_response(408, "Request Timeout", _error(408, "request_timeout", msg)))
            return
        self.transport.close()

    def _answer_and_close(self, raw: bytes) -> None:
        """Write a final answer and close so that the client can read it. Closing a socket that still has
        unread bytes from the client sends a reset, and a reset lets the client's kernel drop the answer
        unread (CI saw a slow-loris client get ECONNRESET instead of its 408). So: the answer, then a
        half-close (FIN after it), then what still arrives is dropped until the client closes or
        ``linger_s`` has passed."""
        self._lingering = True
        self.transport.write(raw)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._linger_timer = self.loop.call_later(self.linger_s, self.transport.close)
        else:  # TLS: no half-close
            self.transport.close()

    def _after_events(self) -> None:
        if self.cycle is not self._seen_cycle and self.cycle is not None:
            self._seen_cycle = self.cycle  # a new request head was parsed
            self._awaiting_head = False
            self._head_bytes, self._head_tail = 0, b""
            self._cancel(self._head_timer)
            self._head_timer = None
        cycle = self.cycle
        if cycle is not None and cycle.more_body and not cycle.response_complete:
            self._arm_body()
        else:
            self._cancel(self._body_timer)
            self._body_timer = None

    # -- protocol ----------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self._refused = True
            self.transport = transport
            msg = "the gateway is at its connection limit; retry in a moment"
            transport.write(raw_response(503, "Service Unavailable", _error(503, "too_many_connections", msg)))
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel(self._head_timer)
        self._cancel(self._body_timer)
        self._cancel(self._linger_timer)
        if self._refused:
            return
        super().connection_lost(exc)

    def _head_too_large(self, data: bytes) -> bool:
        window = self._head_tail + data
        end = window.find(b"\r\n\r\n")
        size = self._head_bytes + (len(data) if end < 0 else end + 4 - len(self._head_tail))
        self._head_bytes, self._head_tail = self._head_bytes + len(data), window[-3:]
        return size > self.max_header_bytes

    def data_received(self, data: bytes) -> None:
        if self._refused or self._lingering or self.transport.is_closing():
            return
        if self._awaiting_head:
            if self._head_timer is None:
                self._arm_head()  # first byte of a request on a kept-alive connection
            if self._head_too_large(data):
                self.logger.warning("closing a connection whose request head is too large")
                msg = f"the request head is larger than this gateway's limit of {self.max_header_bytes} bytes"
                body = _error(431, "request_header_too_large", msg)
                self._answer_and_close(raw_response(431, "Request Header Fields Too Large", body))
                return
        super().data_received(data)
        self._after_events()

    def on_response_complete(self) -> None:
        self._awaiting_head = True
        cast(Any, super()).on_response_complete()
        self._after_events()  # a pipelined request may have been parsed


def _base(parser: str) -> type[asyncio.Protocol]:
    if parser == "auto":
        try:
            import httptools  # noqa: F401
        except ImportError:
            parser = "h11"
        else:
            parser = "httptools"
    if parser == "h11":
        return H11Protocol
    if parser == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        return HttpToolsProtocol
    raise ValueError(f"unknown HTTP parser {parser!r}; use 'auto', 'h11' or 'httptools'")


def guarded_protocol(
    *,
    header_timeout_s: float,
    body_idle_timeout_s: float,
    max_connections: int,
    max_header_bytes: int,
    parser: str = "auto",
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (``parser``: auto = httptools if installed, else h11) with the guard mixed in.

    Pass the class as uvicorn's ``http`` setting.
    """
    base = _base(parser)
    return type(
        f"Guarded{base.__name__}",
        (ProtocolGuard, base),
        {
            "header_timeout_s": header_timeout_s,
            "body_idle_timeout_s": body_idle_timeout_s,
            "max_connections": max_connections,
            "max_header_bytes": max_header_bytes,
        },
    )


ErrorBody = Callable[[Scope, Refusal], dict[str, Any]]
OnRefused = Callable[[Scope, Refusal], Awaitable[None]]


def openai_error_body(scope: Scope, refusal: Refusal) -> dict[str, Any]:
    return _error(refusal.status, refusal.kind, refusal.client_message)


class ContentLengthLimit:
    """ASGI middleware: a declared Content-Length above ``max_bytes`` is answered 413 before the body is read.

    The answer carries ``connection: close`` (the unread body is never consumed). Bodies without a
    Content-Length (chunked) are limited by the app as they stream.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        *,
        error_body: ErrorBody = openai_error_body,
        on_refused: OnRefused | None = None,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.error_body = error_body
        self.on_refused = on_refused

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            declared = None
            for name, value in scope["headers"]:
                if name == b"content-length":
                    declared = value
                    break
            if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
                refusal = Refusal(
                    413,
                    "upload_too_large",
                    f"the request body ({int(declared)} bytes) is larger than this gateway's limit of "
                    f"{self.max_bytes} bytes; nothing was forwarded",
                    hint="split the dataset into smaller files, or ask the operator to raise gateway.max_upload_bytes",
                )
                if self.on_refused is not None:
                    await self.on_refused(scope, refusal)  # e.g. the audit entry; raising answers 500
                body = json.dumps(self.error_body(scope, refusal)).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class ShutdownCancellation:
    """ASGI middleware: a request uvicorn cancels when the shutdown grace period is over gets a clean 503.

    Without it uvicorn logs the cancellation as an application traceback and answers a bare 500.
    Only that cancellation (uvicorn cancels with the message "... timeout graceful shutdown exceeded")
    is answered; any other cancellation propagates unchanged.
    """

    def __init__(self, app: ASGIApp, *, error_body: ErrorBody = openai_error_body) -> None:
        self.app = app
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError as exc:
            if not any("graceful shutdown" in str(arg) for arg in exc.args):
                raise
            logger.warning("a request was cancelled: the shutdown grace period ended before it finished")
            if started:
                return  # the answer was on its way: uvicorn closes the connection
            refusal = Refusal(
                503,
                "gateway_shutting_down",
                "the gateway shut down before this request finished",
                hint="retry it (with the same Idempotency-Key) once the gateway is back",
            )
            body = json.dumps(self.error_body(scope, refusal)).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
