"""Several `bastion gateway` processes sharing one PostgreSQL schema, the official SDK as the client.

Each test starts real replicas (own port, own state dir and audit log, the same part key from the
environment, one recording upstream) and points a client at one replica per call: the Uploads API
spread over replicas, concurrent completes, one Idempotency-Key on two replicas (one after the other
and at once), a replica killed with SIGKILL mid-upload (after a part, and while receiving one), and
PostgreSQL going away mid-run (through a TCP relay this test stops and starts: the real server is
never touched). Skipped without a server unless BASTION_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from bastion.gateway import minted
from bastion.gateway.serve import ServerThread
from tests.gateway.gw_upstream import FakeOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parent / "state"))
from pg_support import PgServer, pg_server_or_skip
from test_postgres import Relay

BASTION = str(Path(sys.executable).parent / "bastion")
BANNER = "bastion gateway on"
EMAIL = "jane.roe@example.org"
CLIENT_KEY = "sk-client-replica-test"


def jsonl(*contents: str) -> bytes:
    turns = [[{"role": "user", "content": c}, {"role": "assistant", "content": "ok"}] for c in contents]
    return "".join(json.dumps({"messages": t}) + "\n" for t in turns).encode()


class Replica:
    """One `bastion gateway` process; its log is read all along (so it never blocks on a full pipe)."""

    def __init__(self, tmp_path: Path, name: str, upstream: str, state_url: str, part_key: str) -> None:
        self.name = name
        cfg = {
            "upstreams": {"openai": {"base_url": upstream, "jurisdiction": "US", "auth": {"mode": "passthrough"}}},
            "gateway": {
                "state_dir": str(tmp_path / name),
                "state_url": state_url,
                "part_key_env": "BASTION_PART_KEY",
            },
        }
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump(cfg))
        env = {**os.environ, "BASTION_PART_KEY": part_key}
        args = ["--policy", "pack:eu-gdpr", "--upstreams", str(config), "--replica-id", name, "--port", "0"]
        self.proc = subprocess.Popen(
            [BASTION, "gateway", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.log: list[str] = []
        self.port = 0

    def wait_ready(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # event-based: until uvicorn reports its start-up (or the process ends)
            self.log.append(line)
            m = re.search(BANNER + r" http://127\.0\.0\.1:(\d+)", line)
            if m:
                self.port = int(m.group(1))
            if "Application startup complete" in line:
                break
        else:
            pytest.fail(f"replica {self.name} exited during start-up:\n" + "".join(self.log))
        assert self.port
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=f"http://127.0.0.1:{self.port}/openai/v1", api_key=CLIENT_KEY, max_retries=0, timeout=120
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=120)  # only a guard against a hang

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)  # only a guard against a hang
        return "".join(self.log)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PgServer]:
    server = pg_server_or_skip()
    try:
        yield server
    finally:
        server.drop()


@pytest.fixture
def upstream() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as srv:
        yield fake, srv.url


class Fleet:
    def __init__(self, tmp_path: Path, upstream: str) -> None:
        self.tmp_path = tmp_path
        self.upstream = upstream
        self.part_key = secrets.token_hex(32)  # the SAME key for every replica
        self.replicas: list[Replica] = []

    def start(self, state_url: str, *names: str) -> list[Replica]:
        started = [Replica(self.tmp_path, n, self.upstream, state_url, self.part_key) for n in names]
        self.replicas += started  # all start at once: the schema migration serialises on its lock
        for r in started:
            r.wait_ready()
        return started

    def stop_all(self) -> dict[str, str]:
        logs = {r.name: r.stop() for r in self.replicas}
        for name, log in logs.items():
            assert "Traceback" not in log, f"{name}:\n{log}"
        return logs


@pytest.fixture
def fleet(tmp_path: Path, upstream: tuple[FakeOpenAI, str]) -> Iterator[Fleet]:
    f = Fleet(tmp_path, upstream[1])
    try:
        yield f
    finally:
        for r in f.replicas:
            if r.proc.poll() is None:
                r.proc.kill()
                r.proc.wait(timeout=120)


def upstream_uploads(fake: FakeOpenAI) -> list[Any]:
    return [r for r in fake.calls("POST", "/v1/uploads") if r.path == "/v1/uploads"]


def test_upload_created_on_a_parts_on_a_and_b_completed_on_c(
    pg_server: PgServer, upstream: tuple[FakeOpenAI, str], fleet: Fleet
) -> None:
    fake, _ = upstream
    a, b, c = fleet.start(pg_server.new_schema_url(), "gw-a", "gw-b", "gw-c")
    data = jsonl("first line", f"write to {EMAIL} please", "third line")
    cut = data.index(b"@") - 3  # the e-mail address is split across the two parts (and replicas)
    with a.client() as ca, b.client() as cb, c.client() as cc:
        up = ca.uploads.create(bytes=len(data), filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
        p1 = ca.uploads.parts.create(upload_id=up.id, data=data[:cut])
        p2 = cb.uploads.parts.create(upload_id=up.id, data=data[cut:])
        assert fake.calls("POST", "/v1/uploads") == []  # held by the gateway until complete
        done = cc.uploads.complete(upload_id=up.id, part_ids=[p1.id, p2.id])
    assert done.status == "completed" and done.file is not None
    assert len(upstream_uploads(fake)) == 1
    content = fake.contents[done.file.id]
    assert EMAIL.encode() not in content
    lines = [json.loads(x)["messages"][0]["content"] for x in content.splitlines()]
    assert lines == ["first line", "write to [EMAIL] please", "third line"]
    fleet.stop_all()


def test_concurrent_completes_on_two_replicas_complete_once(
    pg_server: PgServer, upstream: tuple[FakeOpenAI, str], fleet: Fleet
) -> None:
    fake, _ = upstream
    a, b = fleet.start(pg_server.new_schema_url(), "gw-a", "gw-b")
    data = jsonl(*(f"line {i}" for i in range(50)))
    with a.client() as ca:
        up = ca.uploads.create(bytes=len(data), filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
        part = ca.uploads.parts.create(upload_id=up.id, data=data)
    barrier = threading.Barrier(2)
    answers: dict[str, Any] = {}

    def complete(r: Replica) -> None:
        with r.client() as c:
            barrier.wait()
            try:
                answers[r.name] = c.uploads.complete(upload_id=up.id, part_ids=[part.id])
            except Exception as exc:  # reported below
                answers[r.name] = exc

    threads = [threading.Thread(target=complete, args=(r,)) for r in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # designed behaviour (docs/deploy.md): one replica completes upstream, the other waits for it and
    # answers with the stored result
    got_a, got_b = answers["gw-a"], answers["gw-b"]
    assert not isinstance(got_a, Exception), got_a
    assert not isinstance(got_b, Exception), got_b
    assert got_a.file is not None and got_b.file is not None
    assert got_a.id == got_b.id and got_a.file.id == got_b.file.id
    assert len(upstream_uploads(fake)) == 1
    assert len(fake.calls("POST", "/v1/uploads/")) == 2  # one part, one complete: nothing twice
    fleet.stop_all()


def test_same_idempotency_key_on_two_replicas_is_forwarded_once(
    pg_server: PgServer, upstream: tuple[FakeOpenAI, str], fleet: Fleet
) -> None:
    fake, _ = upstream
    a, b = fleet.start(pg_server.new_schema_url(), "gw-a", "gw-b")
    data = jsonl("hello", f"mail {EMAIL}")
    key = {"Idempotency-Key": minted.random_id("upload-", 16)}
    with a.client() as ca:
        first = ca.files.create(file=("train.jsonl", data), purpose="fine-tune", extra_headers=key)
    with b.client() as cb:
        again = cb.files.create(file=("train.jsonl", data), purpose="fine-tune", extra_headers=key)
        other = cb.files.create(file=("train.jsonl", data), purpose="fine-tune", extra_headers={"Idempotency-Key": "x"})
    assert again.id == first.id  # B replayed A's answer
    assert other.id != first.id
    uploaded = fake.calls("POST", "/v1/files")
    assert len(uploaded) == 2  # the key once, the other key once
    assert all(EMAIL.encode() not in r.body for r in uploaded)
    sent = [r.headers.get("idempotency-key", "") for r in uploaded]  # the client's key is not passed on as sent
    assert all(k.startswith("bastion-") for k in sent) and len(set(sent)) == 2 and key["Idempotency-Key"] not in sent
    fleet.stop_all()


def test_same_idempotency_key_concurrently_on_two_replicas_is_forwarded_once(
    pg_server: PgServer, upstream: tuple[FakeOpenAI, str], fleet: Fleet
) -> None:
    fake, _ = upstream
    a, b = fleet.start(pg_server.new_schema_url(), "gw-a", "gw-b")
    data = jsonl(*(f"row {i}" for i in range(200)))
    key = {"Idempotency-Key": minted.random_id("upload-", 16)}
    barrier = threading.Barrier(2)
    answers: dict[str, Any] = {}

    def upload(r: Replica) -> None:
        with r.client() as c:
            barrier.wait()
            try:
                answers[r.name] = c.files.create(file=("train.jsonl", data), purpose="fine-tune", extra_headers=key)
            except openai.APIStatusError as exc:
                answers[r.name] = exc

    threads = [threading.Thread(target=upload, args=(r,)) for r in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(fake.calls("POST", "/v1/files")) == 1  # whichever replica came second did not forward
    ids = {x.id for x in answers.values() if not isinstance(x, Exception)}
    refused = [x for x in answers.values() if isinstance(x, openai.APIStatusError)]
    assert len(answers) == 2 and len(ids) == 1  # one file; the other answer is that file or a refusal
    for exc in refused:  # designed: the one still being forwarded answers 409, a finished one is replayed
        assert exc.status_code == 409 and "request_in_progress" in json.dumps(exc.body), exc
    fleet.stop_all()


def test_replica_killed_mid_upload_upload_completes_via_another(
    pg_server: PgServer, upstream: tuple[FakeOpenAI, str], fleet: Fleet
) -> None:
    fake, _ = upstream
    a, b = fleet.start(pg_server.new_schema_url(), "gw-a", "gw-b")
    data = jsonl("one", f"two {EMAIL}", "three")
    cut = len(data) // 2
    with a.client() as ca:
        up = ca.uploads.create(bytes=len(data), filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    with b.client() as cb:
        p1 = cb.uploads.parts.create(upload_id=up.id, data=data[:cut])
    b.kill()  # SIGKILL: no clean-up of its own
    assert b.proc.returncode == -signal.SIGKILL
    with a.client() as ca:
        p2 = ca.uploads.parts.create(upload_id=up.id, data=data[cut:])
        done = ca.uploads.complete(upload_id=up.id, part_ids=[p1.id, p2.id])
    assert done.status == "completed" and done.file is not None
    assert len(upstream_uploads(fake)) == 1
    content = fake.contents[done.file.id]
    assert len(content.splitlines()) == 3 and EMAIL.encode() not in content and b"[EMAIL]" in content
    assert "Traceback" not in a.stop()


def test_postgres_unreachable_mid_run_gives_503_and_recovers_without_restart(
    pg_server: PgServer, upstream: tuple[FakeOpenAI, str], fleet: Fleet
) -> None:
    fake, _ = upstream
    host, port = str(pg_server.info.get("host") or "127.0.0.1"), int(pg_server.info.get("port") or 5432)
    relay = Relay((host, port))
    relay.start()
    try:
        url = pg_server.new_schema_url().replace(f"{host}:{port}", f"127.0.0.1:{relay.port}", 1)
        assert f":{relay.port}/" in url
        a, b = fleet.start(url, "gw-a", "gw-b")
        data = jsonl("before the outage", f"mail {EMAIL}")
        with a.client() as ca:
            before = ca.files.create(file=("train.jsonl", data), purpose="fine-tune")  # admitted before
        files_before = len(fake.calls("POST", "/v1/files"))

        relay.stop()  # PostgreSQL is gone for both replicas
        with b.client() as cb, pytest.raises(openai.APIStatusError) as err:
            cb.files.create(file=("train.jsonl", jsonl("during")), purpose="fine-tune")
        assert err.value.status_code == 503 and "state_unavailable" in json.dumps(err.value.body)
        with a.client() as ca, pytest.raises(openai.APIStatusError) as err:
            ca.fine_tuning.jobs.create(training_file=before.id, model="gpt-4o-mini-2024-07-18")
        assert err.value.status_code == 503 and "state_unavailable" in json.dumps(err.value.body)
        assert len(fake.calls("POST", "/v1/files")) == files_before  # fail closed: nothing forwarded
        assert fake.calls("POST", "/v1/fine_tuning") == []

        relay.start()  # back at the same address; the replicas are not restarted
        job = None
        for _ in range(30):  # bounded: each try waits at most the pool timeout for a new connection
            try:
                with b.client() as cb:
                    job = cb.fine_tuning.jobs.create(training_file=before.id, model="gpt-4o-mini-2024-07-18")
                break
            except openai.APIStatusError as exc:
                assert exc.status_code == 503, exc
        assert job is not None and job.training_file == before.id  # the admission through A was not lost
        with a.client() as ca:
            after = ca.files.create(file=("train.jsonl", jsonl("after")), purpose="fine-tune")
        assert after.id != before.id
        assert len(fake.calls("POST", "/v1/fine_tuning")) == 1
        assert a.proc.poll() is None and b.proc.poll() is None  # the same processes throughout
        logs = fleet.stop_all()
        assert any("state store failure" in log for log in logs.values())
    finally:
        relay.stop()


def test_replica_killed_while_receiving_a_part_leaves_nothing_behind(
    pg_server: PgServer, upstream: tuple[FakeOpenAI, str], fleet: Fleet
) -> None:
    import psycopg

    fake, _ = upstream
    url = pg_server.new_schema_url()
    a, b = fleet.start(url, "gw-a", "gw-b")
    data = jsonl(*(f"row {i} {EMAIL}" for i in range(3000)))
    with a.client() as ca:
        up = ca.uploads.create(bytes=len(data), filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    boundary = "b" + secrets.token_hex(8)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="data"; filename="part"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    with socket.create_connection(("127.0.0.1", b.port), timeout=120) as s:
        s.sendall(
            f"POST /openai/v1/uploads/{up.id}/parts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[: len(body) // 2]  # half the part: B is receiving it when it dies
        )
        b.kill()
    with a.client() as ca:
        part = ca.uploads.parts.create(upload_id=up.id, data=data)  # the client sends the part again
        done = ca.uploads.complete(upload_id=up.id, part_ids=[part.id])
    assert done.status == "completed" and done.file is not None
    assert len(upstream_uploads(fake)) == 1
    content = fake.contents[done.file.id]
    assert len(content.splitlines()) == 3000 and EMAIL.encode() not in content
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(600):  # bounded poll: the server rolls back the dead replica's part with its connection
            left = conn.execute("SELECT (SELECT COUNT(*) FROM part_chunks) + (SELECT COUNT(*) FROM part_blobs)")
            row = left.fetchone()
            if row is not None and row[0] == 0:
                break
            conn.execute("SELECT pg_sleep(0.05)")
        else:
            pytest.fail("part bytes of the killed replica (or of the completed upload) are still stored")
    assert "Traceback" not in a.stop()
