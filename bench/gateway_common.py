"""Shared pieces of the gateway benchmarks: a local upstream, processes, ports, the results file.

Everything listens on 127.0.0.1 only. The upstream ("sink") streams request bodies without keeping
them (count + SHA-256) so it never holds a 2 GB upload in memory, and answers in OpenAI's shapes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_POLICY = """
version: 1
name: bench
default_classification: internal
detectors:
  - {id: pii.email, type: email, action: redact, classification: personal}
  - {id: pii.phone, type: phone, action: redact, classification: personal, regions: [DE, GB, US]}
  - {id: fin.iban, type: iban, action: block, classification: special}
upstreams:
  - {id: openai, jurisdiction: US}
residency:
  - {id: res.any, classifications: [public, internal, personal], jurisdictions: ["*"]}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def sink_app():  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def consume(request: Request) -> JSONResponse:
        h = hashlib.sha256()
        n = 0
        async for chunk in request.stream():
            h.update(chunk)
            n += len(chunk)
        return JSONResponse(
            {
                "id": "file-" + secrets.token_hex(8),
                "object": "file",
                "bytes": n,
                "created_at": int(time.time()),
                "filename": "upload.jsonl",
                "purpose": "fine-tune",
                "status": "processed",
                "sha256": h.hexdigest(),
            }
        )

    models = json.dumps(
        {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"}]}
    ).encode()

    async def list_models(request: Request) -> JSONResponse:
        return JSONResponse(json.loads(models))

    return Starlette(
        routes=[Route("/v1/files", consume, methods=["POST"]), Route("/v1/models", list_models, methods=["GET"])]
    )


def server_env() -> dict[str, str]:
    """Environment for the server processes; BENCH_EXTRA_PATH (e.g. uvloop + httptools) is prepended."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    extra = os.environ.get("BENCH_EXTRA_PATH")
    if extra:
        env["PYTHONPATH"] = extra + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def server_stack() -> str:
    """Which uvicorn loop / HTTP parser the server processes will use."""
    code = (
        "import importlib.util as u; print(('uvloop' if u.find_spec('uvloop') else 'asyncio') + ' + ' + "
        "('httptools' if u.find_spec('httptools') else 'h11'))"
    )
    return subprocess.run([sys.executable, "-c", code], env=server_env(), capture_output=True, text=True).stdout.strip()


def start_sink(port: int) -> subprocess.Popen[bytes]:
    code = (
        f"import sys, uvicorn; sys.path.insert(0, {str(REPO / 'bench')!r}); import gateway_common as g; "
        f"uvicorn.run(g.sink_app(), host='127.0.0.1', port={port}, log_level='warning', access_log=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=server_env())
    wait_port(port)
    return proc


def start_gateway(
    workdir: Path, upstream_port: int, port: int, *, args: tuple[str, ...] = (), **settings: object
) -> subprocess.Popen[bytes]:
    import yaml

    (workdir / "policy.yaml").write_text(BENCH_POLICY)
    cfg = {
        "upstreams": {
            "openai": {
                "base_url": f"http://127.0.0.1:{upstream_port}",
                "jurisdiction": "US",
                "auth": {"mode": "passthrough"},
            }
        },
        "gateway": {"state_dir": str(workdir / "state"), "spool_dir": str(workdir / "spool"), **settings},
    }
    (workdir / "upstreams.yaml").write_text(yaml.safe_dump(cfg))
    bastion = Path(sys.executable).parent / "bastion"
    proc = subprocess.Popen(
        [
            str(bastion),
            "gateway",
            "--policy",
            str(workdir / "policy.yaml"),
            "--upstreams",
            str(workdir / "upstreams.yaml"),
            "--port",
            str(port),
            *args,
        ],
        env=server_env(),
    )
    wait_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def append_results(title: str, lines: list[str]) -> None:
    """Append a result block under '## Gateway' in docs/benchmarks.md (creating the section if needed)."""
    path = REPO / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"\n### {title}\n\n" + "\n".join(lines) + "\n"
    if "## Gateway" not in text:
        text = text.rstrip("\n") + "\n\n## Gateway\n"
    start = text.index("## Gateway")
    nxt = text.find("\n## ", start + 1)
    head, rest = (text, "") if nxt < 0 else (text[:nxt], text[nxt:])
    text = head.rstrip("\n") + "\n" + block + rest
    path.write_text(text)


def machine() -> str:
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def base_args(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--no-write", action="store_true", help="print results only; do not append to docs/benchmarks.md")
    return p


class RssSampler:
    """A process's resident memory, sampled every 0.25 s by a thread between ``start()`` and ``stop()``."""

    def __init__(self, pid: int) -> None:
        import psutil

        self._proc = psutil.Process(pid)
        self.start_rss = self._proc.memory_info().rss
        self.samples: list[int] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            self.samples.append(self._proc.memory_info().rss)
            time.sleep(0.25)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    @property
    def max(self) -> int:
        return max(self.samples, default=self.start_rss)

    def line(self) -> str:
        """The results line: start, median, p95 and max in MiB."""
        mib = 1024 * 1024
        s = sorted(self.samples) or [self.start_rss]
        q = len(s)
        return (
            f"- gateway RSS: start {self.start_rss / mib:.0f} MiB, median {s[q // 2] / mib:.0f} MiB, "
            f"p95 {s[int(q * 0.95)] / mib:.0f} MiB, max {s[-1] / mib:.0f} MiB "
            f"({len(self.samples)} samples, every 0.25 s)"
        )
