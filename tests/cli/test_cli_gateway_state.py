"""`bastion gateway` start-up with gateway.state_url (a real process): a PostgreSQL store without a key or
an unreachable server stops it in one line (exit 2, no banner, the port never bound); no server needed."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

BASTION = str(Path(sys.executable).parent / "bastion")
BANNER = "bastion gateway on"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(tmp_path: Path, env: dict[str, str] | None = None, **gateway: Any) -> subprocess.CompletedProcess[str]:
    cfg = {
        "upstreams": {"openai": {"base_url": "http://127.0.0.1:9", "jurisdiction": "US"}},
        "gateway": {"state_dir": str(tmp_path / "state"), **gateway},
    }
    (tmp_path / "upstreams.yaml").write_text(yaml.safe_dump(cfg))
    args = [BASTION, "gateway", "--policy", "pack:eu-gdpr", "--upstreams", str(tmp_path / "upstreams.yaml")]
    return subprocess.run([*args, "--port", "0"], capture_output=True, text=True, timeout=120, env=env)


def test_postgres_state_without_a_part_key_is_one_line(tmp_path: Path) -> None:
    r = start(tmp_path, state_url=f"postgresql://postgres@127.0.0.1:{closed_port()}/bastion")
    assert r.returncode == 2 and r.stdout == "" and BANNER not in r.stderr and "Traceback" not in r.stderr
    first, hint = r.stderr.splitlines()
    assert first == (
        "error: a postgresql:// state store needs a configured held-part key: set gateway.part_key_env to the "
        "name of an environment variable holding 32 random bytes (64 hex digits), the same on every replica"
    )
    assert "secrets.token_hex(32)" in hint


def test_unreachable_postgres_state_is_one_line(tmp_path: Path) -> None:
    import os

    port = closed_port()
    env = {**os.environ, "BASTION_PART_KEY": "ab" * 32}
    r = start(
        tmp_path, env, state_url=f"postgresql://postgres@127.0.0.1:{port}/bastion", part_key_env="BASTION_PART_KEY"
    )
    assert r.returncode == 2 and BANNER not in r.stderr and "Traceback" not in r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"error: state database postgresql://postgres@127.0.0.1:{port}/bastion is unavailable: ")
    assert "Connection refused" in first
