"""The state store on both backends: admitted files, idempotency, held uploads, expiry, start-up clean-up.

Tests that take ``store`` or ``backend`` run on SQLite and on PostgreSQL; the ones about the state dir
itself (files, permissions, SQLite corruption) run on SQLite only.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import anyio
import pytest
from pg_support import Backend
from state_support import PII, add_part, contains, new_upload, now

from bastion.gateway.state import (
    Admitted,
    SQLStateStore,
    StateConflict,
    StateError,
    clean_spool_dir,
    open_sqlite_store,
)
from bastion.gateway.state.schema import LATEST


def admitted(ref: str = "file-abc", client: str = "sha256:aaaaaaaaaaaaaaaa", records: int = 3) -> Admitted:
    return Admitted(
        upstream="openai",
        ref=ref,
        client=client,
        decision="redact",
        classification="personal",
        input_sha256="1" * 64,
        output_sha256="2" * 64,
        records=records,
        policy="pack:eu-gdpr",
        purpose="fine-tune",
        admitted_at=now(),
    )


def test_admitted_is_bound_to_upstream_and_client(store: SQLStateStore) -> None:
    store.admit(admitted())
    got = store.admitted("openai", "file-abc")
    assert got is not None and got.records == 3 and got.classification == "personal"
    assert store.admitted("openai", "file-abc", client="sha256:aaaaaaaaaaaaaaaa") == got
    assert store.admitted("openai", "file-abc", client="sha256:bbbbbbbbbbbbbbbb") is None
    assert store.admitted("offshore", "file-abc") is None
    assert store.admitted("openai", "file-other") is None


def test_admit_is_idempotent_first_admission_kept(store: SQLStateStore) -> None:
    store.admit(admitted(records=3))
    store.admit(admitted(records=99, client="sha256:bbbbbbbbbbbbbbbb"))
    got = store.admitted("openai", "file-abc")
    assert got is not None and got.records == 3 and got.client == "sha256:aaaaaaaaaaaaaaaa"


def test_admitted_survives_reopen(backend: Backend) -> None:
    s = backend.open()
    s.admit(admitted())
    s.close()
    assert backend.open().admitted("openai", "file-abc") is not None


def test_issued_ids_are_kept_per_upstream(backend: Backend) -> None:
    s = backend.open()
    s.issue("vertex", ["390384745178", "6585669831325548505", "6585669831325548505"])
    s.issue("vertex", ["6585669831325548505"])  # a second answer naming the same job
    assert s.issued_among("vertex", ["6585669831325548505", "6069452754643211893"]) == {"6585669831325548505"}
    assert s.issued_among("other", ["390384745178"]) == set()
    s.close()
    s = backend.open()
    assert s.issued_among("vertex", ["390384745178", ""]) == {"390384745178"}
    s.issue("bulk", [f"v{i}" for i in range(450)])  # more than one query's worth
    assert s.issued_among("bulk", [f"v{i}" for i in range(0, 900, 3)]) == {f"v{i}" for i in range(0, 450, 3)}
    s.close()


def test_idempotency_proceed_in_progress_finish_replay_mismatch(store: SQLStateStore) -> None:
    assert store.idempotency_begin("openai:files", "k1", "req-A").outcome == "proceed"
    assert store.idempotency_begin("openai:files", "k1", "req-A").outcome == "in_progress"
    assert store.idempotency_begin("openai:files", "k1", "req-B").outcome == "mismatch"
    store.idempotency_finish("openai:files", "k1", 200, [("content-type", "application/json")], b'{"id":"file-1"}')
    replay = store.idempotency_begin("openai:files", "k1", "req-A")
    assert replay.replay and replay.status == 200
    assert replay.headers == (("content-type", "application/json"),) and replay.body == b'{"id":"file-1"}'
    assert store.idempotency_begin("openai:files", "k1", "req-B").mismatch
    # scopes are independent
    assert store.idempotency_begin("openai:jobs", "k1", "req-B").proceed


def test_idempotency_abandon_lets_a_retry_proceed(store: SQLStateStore) -> None:
    assert store.idempotency_begin("s", "k", "r").proceed
    store.idempotency_abandon("s", "k")
    assert store.idempotency_begin("s", "k", "r").proceed


def test_idempotency_results_expire_after_ttl(backend: Backend) -> None:
    clock = [1_000_000.0]
    s = backend.open(idempotency_ttl_s=60, clock=lambda: clock[0])
    assert s.idempotency_begin("s", "k", "r").proceed
    s.idempotency_finish("s", "k", 201, [], b"{}")
    from datetime import UTC, datetime

    s.expire(datetime.fromtimestamp(clock[0] + 30, UTC))
    assert s.idempotency_begin("s", "k", "r").replay
    s.expire(datetime.fromtimestamp(clock[0] + 61, UTC))
    assert s.idempotency_begin("s", "k", "r").proceed


def test_lease_renewal_keeps_a_live_owner(backend: Backend) -> None:
    clock = [1_000_000.0]
    a = backend.open(part_key=b"k" * 32, lease_s=30, clock=lambda: clock[0], heartbeat=False)
    b = backend.open(part_key=b"k" * 32, lease_s=30, clock=lambda: clock[0], heartbeat=False)
    assert a.idempotency_begin("s", "k", "r").proceed
    clock[0] += 20
    a.renew_leases()  # what the heartbeat thread does every lease_s / 3
    clock[0] += 20  # 40 s after begin, 20 s after the renewal
    assert b.idempotency_begin("s", "k", "r").in_progress
    clock[0] += 11  # 31 s after the last renewal: the owner is presumed dead
    assert b.idempotency_begin("s", "k", "r").proceed
    # the old owner cannot abandon what was taken over
    a.idempotency_abandon("s", "k")
    assert a.idempotency_begin("s", "k", "r").in_progress


def test_upload_parts_in_order_and_complete_is_idempotent(store: SQLStateStore) -> None:
    up = new_upload()
    store.upload_create(up)
    with pytest.raises(StateConflict):
        store.upload_create(up)
    p1 = add_part(store, up.upload_id, PII + b" one")
    p2 = add_part(store, up.upload_id, PII + b" two")
    got = store.upload_get(up.upload_id)
    assert got is not None and got.state == "open" and got.meta == up.meta and got.bytes == up.bytes
    parts = store.upload_parts(up.upload_id)
    assert [p.part_id for p in parts] == [p1.part_id, p2.part_id]
    assert b"".join(store.parts.read(parts[1].blob)) == PII + b" two"
    with store.upload_completing(up.upload_id) as c:
        assert not c.completed
        assert store.upload_get(up.upload_id).state == "completing"  # type: ignore[union-attr]
        store.upload_set_result(up.upload_id, b'{"id":"upload_up_1","status":"completed"}', "upload_up_1")
    assert not store.parts.exists(p1.blob) and not store.parts.exists(p2.blob)
    assert store.upload_parts(up.upload_id) == []
    with store.upload_completing(up.upload_id) as again:
        assert again.completed and again.result == b'{"id":"upload_up_1","status":"completed"}'
        assert again.upstream_upload_id == "upload_up_1"
    late = store.parts.put(b"late part")
    from bastion.gateway.state import HeldPart

    with pytest.raises(StateConflict, match="completed"):
        store.upload_add_part(up.upload_id, HeldPart("part_late", late.size, late.sha256, late.handle, now()))
    assert not store.parts.exists(late.handle)  # a refused part's bytes do not stay behind


def test_failed_complete_opens_the_upload_again(store: SQLStateStore) -> None:
    up = new_upload()
    store.upload_create(up)
    add_part(store, up.upload_id, PII)

    class UpstreamDown(Exception):
        pass

    with pytest.raises(UpstreamDown), store.upload_completing(up.upload_id):
        raise UpstreamDown
    assert store.upload_get(up.upload_id).state == "open"  # type: ignore[union-attr]
    assert len(store.upload_parts(up.upload_id)) == 1
    with store.upload_completing(up.upload_id) as c:
        assert not c.completed
        store.upload_set_result(up.upload_id, b"done", None)


def test_second_complete_gets_in_progress_when_it_cannot_wait(store: SQLStateStore) -> None:
    up = new_upload()
    store.upload_create(up)
    with store.upload_completing(up.upload_id) as first:
        assert not first.completed
        busy = pytest.raises(StateConflict, match="being completed by another request")
        with busy, store.upload_completing(up.upload_id, wait_s=0):
            pass
        store.upload_set_result(up.upload_id, b"r", None)


def test_unknown_upload(store: SQLStateStore) -> None:
    assert store.upload_get("upload_nope") is None
    with pytest.raises(StateConflict, match="does not exist"), store.upload_completing("upload_nope"):
        pass
    with pytest.raises(StateConflict, match="does not exist"):
        add_part(store, "upload_nope", b"x")


def test_async_completing(store: SQLStateStore) -> None:
    up = new_upload()
    store.upload_create(up)
    calls: list[str] = []

    async def complete() -> bytes:
        async with store.aupload_completing(up.upload_id) as c:
            if c.result is not None:
                return c.result
            calls.append("upstream")
            await anyio.sleep(0)
            await anyio.to_thread.run_sync(store.upload_set_result, up.upload_id, b"answer", "upload_up")
            return b"answer"

    async def main() -> list[bytes]:
        results: list[bytes] = []

        async def one() -> None:
            results.append(await complete())

        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(one)
        return results

    assert anyio.run(main) == [b"answer"] * 5
    assert calls == ["upstream"]


def test_expiry_removes_uploads_and_their_part_files(store: SQLStateStore) -> None:
    old = new_upload("upload_old", ttl=timedelta(minutes=1))
    fresh = new_upload("upload_fresh", ttl=timedelta(hours=2))
    store.upload_create(old)
    store.upload_create(fresh)
    old_part = add_part(store, old.upload_id, PII)
    fresh_part = add_part(store, fresh.upload_id, PII)
    assert store.expire(now() + timedelta(minutes=5)) == 1
    assert store.upload_get(old.upload_id) is None and store.upload_parts(old.upload_id) == []
    assert not store.parts.exists(old_part.blob)
    assert store.upload_get(fresh.upload_id) is not None and store.parts.exists(fresh_part.blob)


def test_planted_pii_is_in_no_file_under_the_state_dir(tmp_path: Path) -> None:
    s = open_sqlite_store(tmp_path)
    try:
        up = new_upload()
        s.upload_create(up)
        big = PII * 50_000  # > 2 MiB: several encrypted chunks
        part = add_part(s, up.upload_id, big)
        with s.parts.writer() as w:  # an unfinished part, as at a crash mid-upload
            w.write(PII)
            assert contains(tmp_path, PII) == [] and contains(tmp_path, b"jane.roe") == []
        assert b"".join(s.parts.read(part.blob)) == big
    finally:
        s.close()
    for needle in (PII, b"jane.roe@example.org", b"DE89370400440532013000"):
        assert contains(tmp_path, needle) == []


def test_restart_with_a_per_process_key_removes_held_parts(tmp_path: Path) -> None:
    s = open_sqlite_store(tmp_path)
    up = new_upload()
    s.upload_create(up)
    part = add_part(s, up.upload_id, PII)
    s.close()
    assert (tmp_path / "parts" / f"{part.blob}.part").exists()
    s = open_sqlite_store(tmp_path)  # new process, new key: the old part is unreadable -> removed
    try:
        assert not (tmp_path / "parts" / f"{part.blob}.part").exists()
        assert s.upload_get(up.upload_id) is None  # an upload that lost parts cannot complete
    finally:
        s.close()


def test_restart_with_a_configured_key_keeps_held_parts(backend: Backend, key: bytes) -> None:
    s = backend.open(part_key=key)
    up = new_upload()
    s.upload_create(up)
    part = add_part(s, up.upload_id, PII)
    s.close()
    s = backend.open(part_key=key)
    assert [p.part_id for p in s.upload_parts(up.upload_id)] == [part.part_id]
    assert b"".join(s.parts.read(part.blob)) == PII


def test_startup_removes_parts_never_attached(backend: Backend, key: bytes) -> None:
    s = backend.open(part_key=key)
    up = new_upload()
    s.upload_create(up)
    kept = add_part(s, up.upload_id, PII)
    orphan = s.parts.put(PII)  # written, never attached (the process was killed before upload_add_part)
    s.close()
    # a configured key keeps an unattached part for lease_s (another live process may attach it yet)
    backend.open(part_key=key).close()
    assert backend.open(part_key=key, heartbeat=False).parts.exists(orphan.handle)
    s = backend.open(part_key=key, lease_s=0.001, heartbeat=False)  # ... and removes it after that
    assert not s.parts.exists(orphan.handle)
    assert s.parts.exists(kept.blob) and b"".join(s.parts.read(kept.blob)) == PII


def test_startup_removes_stray_part_files(tmp_path: Path) -> None:
    s = open_sqlite_store(tmp_path)
    orphan = s.parts.put(PII)  # written but never attached (killed before upload_add_part)
    s.close()
    (tmp_path / "parts" / ("f" * 32 + ".tmp")).write_bytes(b"half-written part of a dead writer")
    s = open_sqlite_store(tmp_path)
    try:
        assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [".lock"]
        assert not s.parts.exists(orphan.handle)
    finally:
        s.close()


def test_leftover_spool_files_are_removed(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "bastion-spool-1.part").write_bytes(PII)
    (spool / "sub").mkdir()
    (spool / "sub" / "x").write_bytes(PII)
    assert clean_spool_dir(spool) == 2
    assert list(spool.iterdir()) == []
    assert clean_spool_dir(tmp_path / "missing") == 0


def test_schema_version_is_recorded_once(backend: Backend) -> None:
    backend.open().close()
    backend.open().close()
    rows = backend.sql("SELECT version FROM bastion_schema ORDER BY version")
    assert rows == [(v,) for v in range(1, LATEST + 1)]  # each migration recorded once


def one_line(exc: StateError) -> str:
    assert "\n" not in exc.message
    return exc.message


def test_newer_schema_is_refused(backend: Backend) -> None:
    backend.open().close()
    backend.sql("INSERT INTO bastion_schema VALUES (%s, 'future', 0)", (LATEST + 1,))
    with pytest.raises(StateError) as err:
        backend.open()
    assert f"schema version {LATEST + 1}, newer than this Bastion knows" in one_line(err.value)


def test_state_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StateError) as err:
        open_sqlite_store(tmp_path / "f")
    assert one_line(err.value) == f"state dir {tmp_path / 'f'} is not a directory; set gateway.state_dir to a directory"
    with pytest.raises(StateError, match="cannot be created"):
        open_sqlite_store(tmp_path / "f" / "sub")


def test_database_that_is_not_sqlite(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite3").write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(StateError) as err:
        open_sqlite_store(tmp_path)
    assert "is not a usable SQLite database" in one_line(err.value) and "move the file away" in str(err.value)


def test_database_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "state.sqlite3").mkdir()
    with pytest.raises(StateError, match="is not a regular file"):
        open_sqlite_store(tmp_path)


def test_closed_store_says_so(backend: Backend) -> None:
    s = backend.open()
    s.close()
    with pytest.raises(StateError, match="is closed"):
        s.upload_get("x")


def test_read_only_state_dir(tmp_path: Path) -> None:
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("needs root to mount a read-only file system (root ignores chmod)")
    mnt = tmp_path / "ro"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], check=True)
    try:
        open_sqlite_store(mnt).close()  # a working state dir first
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        with pytest.raises(StateError) as err:
            open_sqlite_store(mnt)
        assert one_line(err.value) == (
            f"state dir {mnt} is not writable: Read-only file system; fix permissions or set gateway.state_dir"
        )
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
