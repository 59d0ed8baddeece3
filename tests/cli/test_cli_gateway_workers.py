"""`bastion gateway --workers N` and replica audit dirs, as real processes on 127.0.0.1.

Requests go over fresh connections (the kernel hands each to one of the workers sharing the socket)
until both workers' audit logs hold entries (bounded loops, no fixed waits); /metrics on any worker
shows the sum over all of them; a file admitted by one worker is known to the other (shared state
store); SIGTERM to the parent stops every worker; a second process pointed
at the same audit dir refuses to start in one line.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from bastion.gateway.audit_segments import verify_audit
from tests.cli.test_cli_gateway_serve import BANNER, Gateway, assert_one_line_error, run, write_config


def unknown_upstream(url: str) -> None:
    """A request the gateway refuses and audits (and counts), over a new connection each time."""
    with httpx.Client(timeout=60) as client:
        r = client.get(url + "/nope/v1/models", headers={"Connection": "close"})
    assert r.status_code == 404


def blocked_total(metrics: str) -> float:
    m = re.search(r'^bastion_gateway_requests_total\{decision="block",route="-",upstream="-"\} (\S+)$', metrics, re.M)
    return float(m.group(1)) if m else 0.0


def audit_entries(log_dir: Path) -> int:
    return verify_audit(log_dir).entries if (log_dir / "audit.jsonl").exists() else 0


def test_two_workers_share_the_port_each_with_its_own_audit_log(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    gw = Gateway("--upstreams", str(cfg), "--replica-id", "r1", "--workers", "2")
    audit = tmp_path / "state" / "audit"
    try:
        parent = psutil.Process(gw.proc.pid)
        workers = parent.children()
        assert len(workers) == 2 and len({w.pid for w in workers}) == 2
        sent = 0
        while not all(audit_entries(audit / f"r1.w{k}") for k in range(2)):
            assert sent < 400, "the kernel gave every connection to one worker"
            unknown_upstream(gw.url)
            sent += 1
        # every request is counted once, whichever worker answers /metrics
        close = {"Connection": "close"}
        scrapes = {blocked_total(httpx.get(gw.url + "/metrics", headers=close).text) for _ in range(6)}
        assert scrapes == {float(sent)}
    finally:
        log = gw.stop()
    assert gw.proc.returncode == 0, log
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    assert "Traceback" not in log and "2 workers" in log
    counts = [verify_audit(audit / f"r1.w{k}").entries for k in range(2)]
    assert sum(counts) == sent and all(counts)


def test_a_second_process_on_the_same_audit_dir_refuses_to_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a shared part key: the two processes may share the state dir (held parts), but never one audit log
    monkeypatch.setenv("BASTION_TEST_PART_KEY", "11" * 32)
    cfg = write_config(tmp_path, "http://127.0.0.1:9", part_key_env="BASTION_TEST_PART_KEY")
    gw = Gateway("--upstreams", str(cfg), "--replica-id", "same")
    try:
        r = run("--port", "0", "--upstreams", str(cfg), "--replica-id", "same")
    finally:
        gw.stop()
    assert_one_line_error(r, "another gateway process is writing the audit log in", "same")
    assert "--replica-id" in r.stderr


def test_default_replica_id_is_host_and_port(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    gw = Gateway("--upstreams", str(cfg))
    try:
        unknown_upstream(gw.url)
    finally:
        log = gw.stop()
    dirs = [p.name for p in (tmp_path / "state" / "audit").iterdir()]
    assert len(dirs) == 1 and dirs[0].endswith(f"-{gw.port}"), dirs
    assert f"replica {dirs[0]}" in log and BANNER in log


def test_a_bad_replica_id_is_one_line(tmp_path: Path) -> None:
    r = run("--port", "0", "--state-dir", str(tmp_path / "state"), "--replica-id", "../etc")
    assert_one_line_error(r, "replica id '../etc' is not usable as a directory name")


def test_a_worker_that_dies_stops_the_replica(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    gw = Gateway("--upstreams", str(cfg), "--replica-id", "r1", "--workers", "2")
    workers = psutil.Process(gw.proc.pid).children()
    workers[0].send_signal(signal.SIGKILL)
    try:
        _, rest = gw.proc.communicate(timeout=120)  # the 120 s only guard against a hang
    except subprocess.TimeoutExpired:
        gw.proc.kill()
        pytest.fail("the supervisor kept running with a dead worker")
    assert gw.proc.returncode == 1
    assert f"pid {workers[0].pid}) exited with status -9; stopping the other workers" in rest
    assert not workers[1].is_running() or workers[1].status() == psutil.STATUS_ZOMBIE
    json.dumps(rest)  # plain text, no binary garbage


def test_workers_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "http://127.0.0.1:9")
    gw = Gateway("--upstreams", str(cfg), "--replica-id", "r1", "--workers", "2")
    workers = psutil.Process(gw.proc.pid).children()
    gw.proc.kill()  # SIGKILL: no chance to pass anything on
    gw.proc.communicate(timeout=120)
    _, alive = psutil.wait_procs(workers, timeout=120)  # the timeout only guards against a hang
    assert alive == [], "orphaned workers kept running"
    restarted = Gateway("--upstreams", str(cfg), "--replica-id", "r1", "--workers", "2")  # port and locks free
    restarted.stop()
    assert restarted.proc.returncode == 0


def test_a_file_admitted_by_one_worker_is_known_to_the_other(tmp_path: Path) -> None:
    """The workers share the state store: a job naming a file that worker A admitted is accepted by B."""
    import openai

    from bastion.gateway.serve import ServerThread
    from tests.gateway.gw_upstream import FakeOpenAI

    fake = FakeOpenAI()
    audit = tmp_path / "state" / "audit"
    with ServerThread(fake.app()) as upstream:
        gw = Gateway("--upstreams", str(write_config(tmp_path, upstream.url)), "--replica-id", "r1", "--workers", "2")
        try:

            def client() -> openai.OpenAI:  # a new connection each time: any worker may take it
                return openai.OpenAI(base_url=gw.url + "/openai/v1", api_key="sk-worker-test", max_retries=0)

            def counts() -> list[int]:
                return [audit_entries(audit / f"r1.w{k}") for k in range(2)]

            def grown(before: list[int]) -> set[int]:
                """The workers whose log grew (polled: an allowed request may be audited just after its answer)."""
                for _ in range(5000):  # bounded poll
                    now = counts()
                    if sum(now) > sum(before):
                        return {k for k in range(2) if now[k] > before[k]}
                    time.sleep(0.002)
                pytest.fail("no audit entry appeared for the request")

            before = counts()
            with client() as c:
                f = c.files.create(
                    file=("t.jsonl", b'{"messages":[{"role":"user","content":"hi"}]}\n'), purpose="fine-tune"
                )
            (admitted_by,) = grown(before)
            jobs_on = set()
            for _ in range(200):  # bounded: until a job lands on the other worker
                before = counts()
                with client() as c:
                    job = c.fine_tuning.jobs.create(training_file=f.id, model="gpt-4o-mini-2024-07-18")
                assert job.training_file == f.id
                jobs_on |= grown(before)
                if 1 - admitted_by in jobs_on:
                    break
            assert 1 - admitted_by in jobs_on, "every connection went to the admitting worker"
        finally:
            gw.stop()
    assert gw.proc.returncode == 0
