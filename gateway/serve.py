"""Run the gateway under uvicorn with its inbound limits: in the foreground (``bastion gateway``) or in a
background thread (tests, benchmarks, embedding)."""

from __future__ import annotations

import json
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

import uvicorn
from starlette.types import ASGIApp, Scope

from bastion.gateway.audit import REFUSED_BEFORE_FORWARDING, client_fingerprint
from bastion.gateway.config import GatewaySettings
from bastion.gateway.errors import Refusal
from bastion.gateway.guard import ContentLengthLimit, ShutdownCancellation, guarded_protocol
from bastion.gateway.spec import json_error

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway


def server_options(settings: GatewaySettings, *, parser: str = "auto") -> dict[str, Any]:
    """uvicorn settings for the gateway's inbound limits (see :mod:`bastion.gateway.guard`).

    ``parser``: "auto" (httptools when installed, else h11), "h11" or "httptools".
    """
    return {
        "http": guarded_protocol(
            parser=parser,
            header_timeout_s=settings.header_timeout_s,
            body_idle_timeout_s=settings.body_idle_timeout_s,
            max_connections=settings.max_inbound_connections,
            max_header_bytes=settings.max_header_bytes,
        ),
        # a second line behind the protocol's own cap (which refuses the connection itself)
        "limit_concurrency": settings.max_inbound_connections + 1,
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "h11_max_incomplete_event_size": settings.max_header_bytes + 1024,
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
        "server_header": False,
    }


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


def guarded_app(gw: Gateway) -> ASGIApp:
    """The gateway's app behind :class:`ContentLengthLimit` (413 at once, audited, provider-shaped) and
    :class:`ShutdownCancellation` (a clean 503 for requests cut by the shutdown deadline)."""

    def error_body(scope: Scope, refusal: Refusal) -> dict[str, Any]:
        prefix = str(scope.get("path", "/")).split("/")[1:2]
        spec = (gw.specs.get(prefix[0]) if prefix else None) or next(iter(gw.specs.values()))
        _ctype, raw = (spec.errors or json_error)(refusal)
        body: dict[str, Any] = json.loads(raw)
        return body

    async def on_refused(scope: Scope, refusal: Refusal) -> None:
        await gw.audit.record(
            {
                "decision": "block",
                "reason": refusal.kind,
                "status": refusal.status,
                "client": client_fingerprint(_headers(scope)),
                "method": str(scope.get("method", "")),
                "declared_bytes": int(_headers(scope).get("content-length", "0")),
                "limit_bytes": gw.settings.max_upload_bytes,
                "policy": gw.policy_name,
            },
            outcome=REFUSED_BEFORE_FORWARDING,
        )

    app = ShutdownCancellation(gw.app, error_body=error_body)
    return ContentLengthLimit(app, gw.settings.max_upload_bytes, error_body=error_body, on_refused=on_refused)


def serve(gw: Gateway, sock: socket.socket, *, access_log: bool = False, log_level: str = "info") -> None:
    """Serve ``gw`` on an already bound, listening socket until SIGINT/SIGTERM (graceful, with a deadline)."""
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        guarded_app(gw),
        host=host,
        port=port,
        access_log=access_log,
        log_level=log_level,
        lifespan="on",
        **server_options(gw.settings),
    )
    uvicorn.Server(config).run(sockets=[sock])


class ServerThread:
    """``with ServerThread(app) as srv: srv.url`` - uvicorn on 127.0.0.1, a free port, stopped on exit.

    Pass ``**server_options(settings)`` for the gateway's inbound limits.
    """

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, **uvicorn_options: Any) -> None:
        options: dict[str, Any] = {"log_level": "warning", "access_log": False, "lifespan": "on"}
        options.update(uvicorn_options)
        self.config = uvicorn.Config(app, host=host, port=port, **options)
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="bastion-uvicorn", daemon=True)
        self.host = host
        self.port = port

    def start(self, timeout: float = 20.0) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        sockets = self.server.servers[0].sockets
        self.port = sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout: float = 20.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
