"""tools/deploy-example: two replicas behind its proxy, the official SDK as the client, as real processes.

Run with the SQLite state store (one machine) and with the machine's PostgreSQL (the replicas' shared
store; its own database, dropped afterwards - skipped without a server unless BASTION_REQUIRE_POSTGRES=1).

The proxy balances per connection, so a fresh client per call lands on the other replica: a file
uploaded through one replica is accepted by the other when a job names it (the shared state store),
both replicas audit what they did, and `bastion audit verify` checks the two logs as a set.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from bastion.gateway.audit_segments import verify_audit
from bastion.gateway.serve import ServerThread
from tests.gateway.gw_upstream import FakeOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway" / "state"))
from pg_support import PgServer, pg_server_or_skip

ROOT = Path(__file__).resolve().parents[2]
BASTION = str(Path(sys.executable).parent / "bastion")


@pytest.fixture
def upstream() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as srv:
        yield fake, srv.url


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    server = pg_server_or_skip()
    try:
        yield server
    finally:
        server.drop()


@pytest.fixture(params=["sqlite", "postgres"])
def state_args(request: pytest.FixtureRequest) -> list[str]:
    if request.param == "sqlite":
        return []
    server: PgServer = request.getfixturevalue("pg_server")
    return ["--state-url", server.new_schema_url()]


def test_two_replicas_behind_the_proxy(tmp_path: Path, upstream: tuple[FakeOpenAI, str], state_args: list[str]) -> None:
    fake, url = upstream
    script = [sys.executable, str(ROOT / "tools" / "deploy-example")]
    proc = subprocess.Popen(
        [*script, "--dir", str(tmp_path), "--port", "0", "--upstream", url, *state_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # event-based: the script prints this once both replicas serve
        m = re.match(r"ready: (http://127\.0\.0\.1:\d+/openai/v1) -> replica-a on :\d+, replica-b on :\d+", line)
        assert m, line + (proc.stderr.read() if proc.stderr and proc.poll() is not None else "")

        def client() -> openai.OpenAI:  # a new connection: the proxy's next replica
            return openai.OpenAI(base_url=m.group(1), api_key="sk-client-example-token", max_retries=0, timeout=60)

        turns = [{"role": "user", "content": "mail jane.roe@example.org"}, {"role": "assistant", "content": "ok"}]
        record = {"messages": turns}
        data = (json.dumps(record) + "\n").encode()
        with client() as c:
            f = c.files.create(file=("train.jsonl", data), purpose="fine-tune")
        with client() as c:
            job = c.fine_tuning.jobs.create(training_file=f.id, model="gpt-4o-mini-2024-07-18")
        assert job.training_file == f.id
        uploaded = fake.calls("POST", "/v1/files")
        assert len(uploaded) == 1 and b"jane.roe@example.org" not in uploaded[0].body  # redacted on the way
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)  # the 120 s only guard against a hang
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    audit = tmp_path / "state" / "audit"
    assert sorted(p.name for p in audit.iterdir()) == ["replica-a", "replica-b"]
    assert all(verify_audit(audit / name).entries >= 1 for name in ("replica-a", "replica-b"))  # both served
    r = subprocess.run(
        [BASTION, "audit", "verify", str(tmp_path / "state"), "--expect", "replica-a", "--expect", "replica-b"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0 and "2 replica log(s)" in r.stderr and "all intact" in r.stderr, r.stderr
