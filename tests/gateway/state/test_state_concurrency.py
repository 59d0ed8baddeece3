"""Races between threads and between processes on one state database, and a process killed mid-work."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from state_support import PII, StoreFactory, add_part, new_upload

from bastion.gateway.state import IdemBegin, SQLStateStore, StateConflict, open_sqlite_store

WORKER = str(Path(__file__).parent / "state_worker.py")


def test_threads_completing_one_upload_forward_once(store: SQLStateStore) -> None:
    up = new_upload()
    store.upload_create(up)
    add_part(store, up.upload_id, PII)
    n = 8
    barrier = threading.Barrier(n)
    upstream_calls: list[int] = []
    results: list[bytes] = []
    errors: list[BaseException] = []

    def complete(i: int) -> None:
        try:
            barrier.wait()
            with store.upload_completing(up.upload_id) as c:
                if c.result is None:
                    upstream_calls.append(i)
                    store.upload_set_result(up.upload_id, f"answer-{i}".encode(), "upload_up")
                    results.append(f"answer-{i}".encode())
                else:
                    results.append(c.result)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=complete, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(upstream_calls) == 1
    assert results == [f"answer-{upstream_calls[0]}".encode()] * n


def begin(s: SQLStateStore, key: str, barrier: threading.Barrier, outcomes: list[str]) -> None:
    barrier.wait()
    outcomes.append(s.idempotency_begin("openai:files", key, "req").outcome)


def test_threads_same_idempotency_key_one_proceeds(open_store: StoreFactory) -> None:
    stores = [open_store(part_key=b"k" * 32) for _ in range(2)]
    try:
        for round_ in range(20):
            barrier = threading.Barrier(2)
            outcomes: list[str] = []
            threads = [threading.Thread(target=begin, args=(s, f"key-{round_}", barrier, outcomes)) for s in stores]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sorted(outcomes) == ["in_progress", "proceed"]
    finally:
        for s in stores:
            s.close()


class Worker:
    def __init__(self, state_dir: Path, key: bytes, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, WORKER, str(state_dir), key.hex(), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.line() == "ready", self.proc.stderr.read() if self.proc.stderr else ""

    def line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def send(self, text: str = "go") -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def reply(self) -> dict[str, object]:
        text = self.line()
        assert text, self.proc.stderr.read() if self.proc.stderr else ""
        out: dict[str, object] = json.loads(text)
        return out

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def finish(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(BrokenPipeError):
                self.send("")
            self.proc.wait(60)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def test_processes_completing_one_upload_forward_once(tmp_path: Path, key: bytes) -> None:
    s = open_sqlite_store(tmp_path, part_key=key)
    up = new_upload()
    s.upload_create(up)
    add_part(s, up.upload_id, PII)
    workers = [Worker(tmp_path, key, "complete", up.upload_id) for _ in range(3)]
    try:
        for w in workers:
            w.send()
        replies = [w.reply() for w in workers]
    finally:
        for w in workers:
            w.finish()
    assert sum(1 for r in replies if r["won"]) == 1
    assert len({r["result"] for r in replies}) == 1
    got = s.upload_get(up.upload_id)
    assert got is not None and got.state == "completed" and got.result == str(replies[0]["result"]).encode()
    assert s.upload_parts(up.upload_id) == []
    s.close()


def test_processes_same_idempotency_key_one_proceeds(tmp_path: Path, key: bytes) -> None:
    open_sqlite_store(tmp_path, part_key=key).close()  # schema in place before the race
    workers = [Worker(tmp_path, key, "begin", "openai:files", "key-1", "req-1") for _ in range(2)]
    try:
        for w in workers:
            w.send()
        outcomes = sorted(str(w.reply()["outcome"]) for w in workers)
    finally:
        for w in workers:
            w.finish()
    assert outcomes == ["in_progress", "proceed"]


def test_kill9_of_an_idempotency_owner_is_taken_over_after_the_lease(tmp_path: Path, key: bytes) -> None:
    w = Worker(tmp_path, key, "begin", "openai:files", "key-1", "req-1")
    w.send()
    assert w.reply() == {"outcome": "proceed"}
    w.kill9()
    w.finish()
    live = open_sqlite_store(tmp_path, part_key=key)
    # 31 s later (default lease 30 s, no renewal from the dead owner): a store whose clock reads that
    later = open_sqlite_store(tmp_path, part_key=key, clock=lambda: time.time() + live.lease_s + 1, cleanup=False)
    try:
        assert live.idempotency_begin("openai:files", "key-1", "req-1") == IdemBegin("in_progress")
        assert later.idempotency_begin("openai:files", "key-1", "req-1") == IdemBegin("proceed")
        assert later.idempotency_begin("openai:files", "key-1", "req-2") == IdemBegin("mismatch")
    finally:
        live.close()
        later.close()


def test_kill9_during_complete_is_taken_over_after_the_lease(tmp_path: Path, key: bytes) -> None:
    s = open_sqlite_store(tmp_path, part_key=key)
    up = new_upload()
    s.upload_create(up)
    add_part(s, up.upload_id, PII)
    w = Worker(tmp_path, key, "hold", up.upload_id)
    w.send()
    assert w.reply() == {"held": True}
    w.kill9()
    w.finish()
    later = open_sqlite_store(tmp_path, part_key=key, clock=lambda: time.time() + s.lease_s + 1, cleanup=False)
    # the dead holder's lease is still valid for this clock
    with pytest.raises(StateConflict, match="being completed by another"), s.upload_completing(up.upload_id, wait_s=0):
        pass
    try:
        with later.upload_completing(up.upload_id, wait_s=0) as c:
            assert c.result is None
            assert len(later.upload_parts(up.upload_id)) == 1
            later.upload_set_result(up.upload_id, b"done", "upload_up")
    finally:
        later.close()
        s.close()
