"""The PostgreSQL store as replicas use it: key required, parts across processes, outages and recovery.

The behavioural tests shared with SQLite are in test_state_store.py / test_state_concurrency.py (they
run on both backends); these are the PostgreSQL-only ones. An outage is simulated without touching
the real server: a TCP relay in front of it is stopped and started again, and backends are ended with
pg_terminate_backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pg_support import PgServer, PostgresBackend
from state_support import PII, Worker, add_part, new_upload, now

from bastion.gateway.state import Admitted, SQLStateStore, StateError, open_state_store
from bastion.gateway.state.parts import CHUNK

# psycopg is imported inside the tests: without it (or without a server) the fixtures skip or, with
# BASTION_REQUIRE_POSTGRES=1, fail with the reason, instead of a collection error.


@pytest.fixture
def pg(pg_url: str) -> Iterator[PostgresBackend]:
    b = PostgresBackend(pg_url)
    try:
        yield b
    finally:
        b.close_all()


def one_line(exc: StateError) -> str:
    assert "\n" not in exc.message
    return exc.message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_postgres_store_needs_a_configured_key(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(StateError) as err:
        open_state_store(pg_url)  # no gateway.part_key_env
    msg = one_line(err.value)
    assert msg.startswith("a postgresql:// state store needs a configured held-part key")
    assert "gateway.part_key_env" in msg and "BASTION_PART_KEY" in str(err.value)
    monkeypatch.setenv("BASTION_PART_KEY", "ab" * 32)
    s = open_state_store(pg_url, part_key_env="BASTION_PART_KEY")
    try:
        assert s.dialect.name == "postgresql" and not s.parts.ephemeral
    finally:
        s.close()


def test_unreachable_server_is_one_clean_line(pg_server: PgServer) -> None:
    from bastion.gateway.state.postgres import open_postgres_store

    port = free_port()  # nothing listens there
    with pytest.raises(StateError) as err:
        open_postgres_store(f"postgresql://postgres:s3cret@127.0.0.1:{port}/db", part_key=b"k" * 32)
    msg = one_line(err.value)
    assert msg.startswith(f"state database postgresql://postgres@127.0.0.1:{port}/db is unavailable: ")
    assert "s3cret" not in str(err.value)  # a password in the URL is never echoed


def test_replicas_with_different_keys_are_refused(pg: PostgresBackend) -> None:
    a = pg.open(part_key=b"a" * 32)
    up = new_upload()
    a.upload_create(up)
    add_part(a, up.upload_id, PII)
    with pytest.raises(StateError) as err:
        pg.open(part_key=b"b" * 32)
    assert "holds 1 held parts sealed under another key" in one_line(err.value)
    assert "same key" in str(err.value)
    # the refused replica removed nothing: the upload and its part are intact for the others
    assert len(a.upload_parts(up.upload_id)) == 1 and a.upload_get(up.upload_id) is not None


def test_parts_written_by_two_processes_are_read_and_completed_by_a_third(pg: PostgresBackend, key: bytes) -> None:
    s = pg.open(part_key=key)
    up = new_upload()
    s.upload_create(up)
    writers = [Worker(pg.location, key, "addpart", up.upload_id, "2") for _ in range(2)]
    try:
        for w in writers:
            w.send()
        written = [w.reply()["parts"] for w in writers]
    finally:
        for w in writers:
            w.finish()
    expected = {str(pid): str(digest) for parts in written for pid, digest in parts}  # type: ignore[attr-defined]
    assert len(expected) == 4
    reader = Worker(pg.location, key, "read", up.upload_id)
    try:
        reader.send()
        assert reader.reply()["parts"] == expected
    finally:
        reader.finish()
    completer = Worker(pg.location, key, "complete", up.upload_id)
    try:
        completer.send()
        assert completer.reply()["won"] is True
    finally:
        completer.finish()
    assert s.upload_parts(up.upload_id) == []
    assert pg.sql("SELECT COUNT(*) FROM part_blobs") == [(0,)]
    assert pg.sql("SELECT COUNT(*) FROM part_chunks") == [(0,)]


def test_processes_admitting_the_same_file_keep_the_first(pg: PostgresBackend, key: bytes) -> None:
    pg.open(part_key=key)  # schema in place
    workers = [Worker(pg.location, key, "admit", "file-same", f"sha256:{i:016x}") for i in range(3)]
    try:
        for w in workers:
            w.send()
        kept = {str(w.reply()["client"]) for w in workers}
    finally:
        for w in workers:
            w.finish()
    assert len(kept) == 1  # every replica sees the one admission that won
    assert pg.sql("SELECT COUNT(*) FROM admitted WHERE ref = 'file-same'") == [(1,)]


def test_a_killed_part_writer_leaves_nothing(pg: PostgresBackend, key: bytes) -> None:
    pg.open(part_key=key)
    w = Worker(pg.location, key, "write")
    w.send()
    handle = str(w.reply()["handle"])
    backends = pg.sql(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'"
    )
    assert len(backends) == 1  # the writer's open transaction: 2 chunks sent, nothing visible yet
    assert pg.sql("SELECT COUNT(*) FROM part_chunks") == [(0,)]
    w.kill9()
    w.finish()
    pid = backends[0][0]
    for _ in range(500):  # the server notices the dropped connection and rolls back
        if not pg.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)):
            break
        time.sleep(0.01)
    assert not pg.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,))
    assert pg.sql("SELECT COUNT(*) FROM part_chunks WHERE handle = %s", (handle,)) == [(0,)]
    assert pg.sql("SELECT COUNT(*) FROM part_blobs") == [(0,)]


@pytest.mark.parametrize("damage", ["bit-flip", "last-chunk-gone", "count-cut", "swapped", "moved"])
def test_damaged_database_parts_are_refused(pg: PostgresBackend, damage: str) -> None:
    s = pg.open()
    data = PII * (2 * CHUNK // len(PII) + 10)  # 3 chunks
    blob = s.parts.put(data)
    other = s.parts.put(PII * 10)
    assert pg.sql("SELECT chunks FROM part_blobs WHERE handle = %s", (blob.handle,)) == [(3,)]
    h = blob.handle
    if damage == "bit-flip":
        pg.sql(
            "UPDATE part_chunks SET data = set_byte(data, 40, get_byte(data, 40) # 1) WHERE handle = %s AND seq = 1",
            (h,),
        )
    elif damage == "last-chunk-gone":
        pg.sql("DELETE FROM part_chunks WHERE handle = %s AND seq = 2", (h,))
    elif damage == "count-cut":  # a cut part whose row says it ends earlier: the new last chunk is not final
        pg.sql("UPDATE part_blobs SET chunks = 2 WHERE handle = %s", (h,))
    elif damage == "swapped":
        for a, b in ((1, 99), (2, 1), (99, 2)):
            pg.sql("UPDATE part_chunks SET seq = %s WHERE handle = %s AND seq = %s", (b, h, a))
    else:  # a chunk of another part moved in
        pg.sql("DELETE FROM part_chunks WHERE handle = %s AND seq = 0", (h,))
        pg.sql("UPDATE part_chunks SET handle = %s WHERE handle = %s AND seq = 0", (h, other.handle))
    with pytest.raises(StateError, match="damaged or was sealed under another key"):
        b"".join(s.parts.read(h))


def test_planted_pii_is_in_no_row_of_the_database(pg: PostgresBackend) -> None:
    s = pg.open()
    up = new_upload()
    s.upload_create(up)
    big = PII * 50_000  # > 2 MiB: several chunks
    add_part(s, up.upload_id, big)
    tables = [r[0] for r in pg.sql("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")]
    assert {"part_blobs", "part_chunks", "held_parts", "held_uploads"} <= set(tables)
    dump = "\n".join(str(row[0]) for t in tables for row in pg.sql(f"SELECT t::text FROM {t} t"))
    assert len(dump) > 2 * len(big)  # the sealed bytes are in the dump (as hex)
    for needle in (b"jane.roe@example.org", b"DE89370400440532013000"):
        assert needle.decode() not in dump and needle.hex() not in dump


def test_terminated_connections_are_replaced_without_an_error(pg: PostgresBackend) -> None:
    s = pg.open()
    s.admit(Admitted("openai", "file-1", "c", "allow", None, "1" * 64, "2" * 64, 1, "p", None, now()))
    for round_ in range(5):  # the server ends every connection of the store (as at a restart) ...
        ended = pg.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'bastion-gateway'"
        )
        assert ended and all(r[0] for r in ended)
        # ... and no call fails: a dead connection is replaced when taken from the pool, or the
        # transaction that found it dead at BEGIN is retried on another one
        assert s.admitted("openai", "file-1") is not None
        assert s.idempotency_begin("sc", f"k{round_}", "r").proceed
        assert s.idempotency_begin("sc", f"k{round_}", "r").in_progress


class Relay:
    """A TCP relay 127.0.0.1:port -> the PostgreSQL server; stop() drops every connection, start() resumes."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    def start(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(32)
        self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def _accept(self, ls: socket.socket) -> None:
        while True:
            try:
                client, _ = ls.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not ls:  # stopped while this one was being accepted
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        with self._lock:
            ls, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if ls is not None:
            with contextlib.suppress(OSError):
                ls.shutdown(socket.SHUT_RDWR)
            ls.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()


def test_outage_gives_clean_errors_and_the_store_recovers_without_a_restart(pg: PostgresBackend) -> None:
    import psycopg

    from bastion.gateway.state.postgres import open_postgres_store

    info = psycopg.conninfo.conninfo_to_dict(pg.url)
    relay = Relay((str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)))
    relay.start()
    url = pg.url.replace(f"{info.get('host')}:{info.get('port')}", f"127.0.0.1:{relay.port}", 1)
    assert str(relay.port) in url
    s: SQLStateStore = open_postgres_store(url, part_key=pg.key, pool_timeout_s=1.0, connect_timeout_s=2)
    try:
        admitted_before = Admitted("openai", "file-before", "c", "allow", None, "1" * 64, "2" * 64, 1, "p", None, now())
        s.admit(admitted_before)
        relay.stop()  # PostgreSQL is gone for the gateway
        for call in (
            lambda: s.admitted("openai", "file-before"),
            lambda: s.admit(admitted_before),
            lambda: s.idempotency_begin("sc", "k", "r"),
            lambda: s.upload_create(new_upload()),
        ):
            with pytest.raises(StateError) as err:
                call()
            msg = one_line(err.value)
            assert msg.startswith("state database postgresql://postgres@127.0.0.1:") and " is unavailable: " in msg
        relay.start()  # back, same address; the store is not reopened
        got = None
        for _ in range(100):  # each try waits up to the pool timeout for a new connection
            with contextlib.suppress(StateError):
                got = s.admitted("openai", "file-before")
                break
        assert got is not None and got.ref == "file-before"  # nothing admitted before the outage was lost
        assert s.idempotency_begin("sc", "k", "r").proceed
        up = new_upload()
        s.upload_create(up)
        part = add_part(s, up.upload_id, PII)
        assert b"".join(s.parts.read(part.blob)) == PII
    finally:
        s.close()
        relay.stop()


def test_expired_uploads_drop_their_chunks(pg: PostgresBackend) -> None:
    from datetime import timedelta

    s = pg.open()
    up = new_upload(ttl=timedelta(minutes=1))
    s.upload_create(up)
    add_part(s, up.upload_id, PII * 30_000)
    assert pg.sql("SELECT COUNT(*) FROM part_chunks")[0][0] >= 2
    assert s.expire(datetime.now(UTC) + timedelta(minutes=5)) == 1
    assert pg.sql("SELECT COUNT(*) FROM part_chunks") == [(0,)] and pg.sql("SELECT COUNT(*) FROM part_blobs") == [(0,)]


def test_large_part_round_trip_digest(pg: PostgresBackend) -> None:
    s = pg.open()
    data = bytes(range(256)) * (5 * CHUNK // 256 + 3)
    with s.parts.writer() as w:
        for i in range(0, len(data), 300_000):
            w.write(data[i : i + 300_000])
        blob = w.commit()
    assert blob.sha256 == hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(b"".join(s.parts.read(blob.handle))).hexdigest() == blob.sha256
