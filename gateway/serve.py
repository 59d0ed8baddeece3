"""Run an ASGI app under uvicorn in a background thread (tests, benchmarks, embedding)."""

from __future__ import annotations

import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp


class ServerThread:
    """``with ServerThread(app) as srv: srv.url`` - uvicorn on 127.0.0.1, a free port, stopped on exit."""

    def __init__(self, app: ASGIApp, *, host: str = "127.0.0.1", port: int = 0, **uvicorn_options: object) -> None:
        options: dict[str, object] = {"log_level": "warning", "access_log": False, "lifespan": "on"}
        options.update(uvicorn_options)
        self.config = uvicorn.Config(app, host=host, port=port, **options)  # type: ignore[arg-type]
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
