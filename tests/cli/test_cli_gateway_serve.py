"""`bastion gateway` as a real process: start-up errors are one line (exit 2, no banner), a declared
Content-Length above the limit is refused at once, and SIGTERM does not wait for a hanging upstream."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

BASTION = str(Path(sys.executable).parent / "bastion")
POLICY = "pack:eu-gdpr"
BANNER = "bastion gateway on"


def write_config(tmp_path: Path, base_url: str, **gateway: Any) -> Path:
    cfg = {
        "upstreams": {"openai": {"base_url": base_url, "jurisdiction": "US", "auth": {"mode": "passthrough"}}},
        "gateway": {"state_dir": str(tmp_path / "state"), **gateway},
    }
    path = tmp_path / "upstreams.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASTION, "gateway", "--policy", POLICY, *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and BANNER not in r.stderr
    first = r.stderr.strip().splitlines()[0]
    for needle in needles:
        assert needle in first, r.stderr


class Gateway:
    """A `bastion gateway` subprocess on a free port; ready once uvicorn reports its start-up."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [BASTION, "gateway", "--policy", POLICY, "--port", "0", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self.port = 0
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # event-based: read until the start-up lines arrive (or it exits)
            self.log.append(line)
            m = re.search(BANNER + r" http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            if "Application startup complete" in line:
                break
        else:
            pytest.fail("gateway exited during start-up:\n" + "".join(self.log))
        assert self.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """SIGTERM; returns the rest of its log once it exited (the 120 s only guard against a hang)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, rest = self.proc.communicate(timeout=120)
        return "".join(self.log) + rest


def test_busy_port_is_one_line_and_no_banner(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run("--port", str(port), "--state-dir", str(tmp_path / "state"))
    assert_one_line_error(r, f"cannot listen on 127.0.0.1:{port}", "Address already in use")
    assert "another process listens there" in r.stderr


def test_unusable_state_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    r = run("--port", "0", "--state-dir", str(tmp_path / "file" / "state"))
    assert_one_line_error(r, f"state dir {tmp_path / 'file' / 'state'} cannot be created", "Not a directory")


def test_unusable_state_database(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "state.sqlite3").write_bytes(b"not a database " * 500)
    r = run("--port", "0", "--state-dir", str(state))
    assert_one_line_error(r, f"state database {state / 'state.sqlite3'} is not a usable SQLite database")


def test_start_up_removes_leftover_spools_and_stale_parts(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "spool").mkdir(parents=True)
    (state / "spool" / "bastion-spool-x.part").write_text("jane.roe@example.org from an interrupted upload")
    (state / "parts").mkdir()
    (state / "parts" / ("a" * 32 + ".part")).write_bytes(b"sealed under the key of a previous run")
    gw = Gateway("--upstreams", str(write_config(tmp_path, "http://127.0.0.1:9")))
    gw.stop()
    assert list((state / "spool").iterdir()) == []
    assert sorted(p.name for p in (state / "parts").iterdir()) == [".lock"]


def test_torn_audit_log_is_one_line_naming_the_repair(tmp_path: Path) -> None:
    log_dir = tmp_path / "state" / "audit" / "r1"
    log_dir.mkdir(parents=True)
    (log_dir / "audit.jsonl").write_text('{"data":{"decision":"allow"},"hash":"ab')  # a crash mid-write
    r = run("--port", "0", "--state-dir", str(tmp_path / "state"), "--replica-id", "r1")
    assert_one_line_error(r, "the audit log cannot be opened", "the last line is torn")
    assert f"bastion ledger repair {log_dir / 'audit.jsonl'}" in r.stderr


def test_plain_http_to_a_remote_upstream_is_refused(tmp_path: Path) -> None:
    cfg = {
        "upstreams": {
            "openai": {
                "base_url": "http://api.example.com",  # never contacted: the gateway refuses to start
                "jurisdiction": "US",
                "auth": {"mode": "replace", "api_key_env": "OPENAI_API_KEY"},
            }
        },
        "gateway": {"state_dir": str(tmp_path / "state")},
    }
    (tmp_path / "u.yaml").write_text(yaml.safe_dump(cfg))
    r = run("--port", "0", "--upstreams", str(tmp_path / "u.yaml"))
    assert_one_line_error(r, "upstream 'openai' uses plain http to api.example.com", "provider key ($OPENAI_API_KEY)")
    assert "allow_plain_http: true" in r.stderr


def test_content_length_above_the_limit_is_refused_at_once_and_audited(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9", max_upload_bytes=1000)
    gw = Gateway("--upstreams", str(cfg), "--replica-id", "r1")
    try:
        with socket.create_connection(("127.0.0.1", gw.port), timeout=60) as s:
            s.sendall(
                b"POST /openai/v1/files HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-secret-client\r\n"
                b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 10000000000\r\n\r\n"
            )
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
    finally:
        log = gw.stop()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "upload_too_large"
    lines = (tmp_path / "state" / "audit" / "r1" / "audit.jsonl").read_text().splitlines()
    entries = [json.loads(x)["data"] for x in lines]
    assert entries[-1]["outcome"] == "refused_before_forwarding" and entries[-1]["declared_bytes"] == 10**10
    assert "sk-secret-client" not in json.dumps(entries) and "Traceback" not in log


@pytest.fixture
def hanging_upstream() -> Iterator[tuple[str, threading.Event]]:
    """A TCP server that reads a request head, reports it, and never answers."""
    arrived, stop = threading.Event(), threading.Event()
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        conn, _ = srv.accept()
        held.append(conn)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        arrived.set()
        stop.wait()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}", arrived
    finally:
        stop.set()
        for c in held:
            c.close()
        srv.close()


Hanging = tuple[str, threading.Event]


def test_sigterm_does_not_wait_for_a_hanging_upstream(tmp_path: Path, hanging_upstream: Hanging) -> None:
    url, arrived = hanging_upstream
    cfg = write_config(tmp_path, url, shutdown_grace_s=1)  # upstream read timeout stays at 600 s
    gw = Gateway("--upstreams", str(cfg))
    answer: list[Any] = []

    def client() -> None:
        try:
            answer.append(httpx.get(f"{gw.url}/openai/v1/models", headers={"Authorization": "Bearer t"}, timeout=300))
        except httpx.HTTPError as exc:
            answer.append(exc)

    t = threading.Thread(target=client)
    t.start()
    arrived.wait(120)
    assert arrived.is_set(), "the request never reached the upstream"
    log = gw.stop()  # SIGTERM while the forward hangs: returns once the process exited
    t.join(120)
    assert gw.proc.returncode is not None
    assert "timeout graceful shutdown exceeded" in log and "Traceback" not in log
    assert answer and isinstance(answer[0], httpx.Response), answer
    assert answer[0].status_code == 503 and answer[0].json()["error"]["code"] == "gateway_shutting_down"
