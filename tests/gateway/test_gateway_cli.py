"""`bastion gateway` command: config errors are clear, and it serves."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from gw_support import POLICY_YAML

BASTION = str(Path(sys.executable).parent / "bastion")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BASTION, "gateway", *args], capture_output=True, text=True, timeout=60)


def test_bad_upstreams_file(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text(POLICY_YAML)
    (tmp_path / "u.yaml").write_text(
        "upstreams:\n  openai:\n    base_url: ftp://x\n    jurisdiction: US\n    auth: {mode: replace}\n"
    )
    r = run("--policy", str(tmp_path / "p.yaml"), "--upstreams", str(tmp_path / "u.yaml"))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "upstreams.openai.base_url" in r.stderr and "upstreams.openai.auth" in r.stderr


def test_missing_policy(tmp_path: Path) -> None:
    r = run("--policy", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "policy file not found" in r.stderr and "Traceback" not in r.stderr


def test_serves(tmp_path: Path) -> None:
    import socket

    (tmp_path / "p.yaml").write_text(POLICY_YAML)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [BASTION, "gateway", "--policy", str(tmp_path / "p.yaml"), "--port", str(port), "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=60)  # a loaded machine is slow
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("gateway did not start: " + (proc.stderr.read() if proc.stderr else ""))
                time.sleep(0.1)
        assert r.json() == {"status": "ok", "upstreams": ["openai"]}
    finally:
        proc.terminate()
        proc.wait(20)
    assert (tmp_path / "state.sqlite3").exists()
