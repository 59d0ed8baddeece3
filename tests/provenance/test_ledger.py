"""The hash-chained ledger: appending, resuming, fsync policies, concurrency and tamper detection."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import LedgerError, LedgerVerificationError
from bastion.provenance.canonical import canonical_json
from bastion.provenance.ledger import GENESIS, Ledger, LedgerHead, entry_hash, read_entries, verify_ledger

N = 6  # entries in the ledger most tamper tests start from


def make_ledger(path: Path, n: int = N) -> list[dict[str, Any]]:
    with Ledger(path, fsync="never") as led:
        return [led.append("log", {"step": i, "loss": 1.0 / (i + 1)}) for i in range(n)]


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def write_lines(path: Path, content: list[bytes]) -> None:
    path.write_bytes(b"".join(content))


def rehash(raw: bytes, **changes: Any) -> bytes:
    """An entry edited by someone who also recomputed its own hash."""
    entry = json.loads(raw)
    entry.update(changes)
    entry["hash"] = entry_hash(entry)
    return canonical_json(entry) + b"\n"


def broken_at(path: Path, **expect: Any) -> LedgerVerificationError:
    with pytest.raises(LedgerVerificationError) as info:
        verify_ledger(path, **expect)
    err = info.value
    assert err.path == path
    assert str(err).startswith(f"{path}:{err.line}: ")
    return err


# --- appending and reading -------------------------------------------------------------------


def test_entries_are_chained_canonical_lines(tmp_path: Path) -> None:
    p = tmp_path / "ledger.jsonl"
    entries = make_ledger(p, 3)
    assert [e["seq"] for e in entries] == [0, 1, 2]
    assert entries[0]["prev"] == GENESIS
    assert [e["prev"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    assert all(e["hash"] == entry_hash(e) for e in entries)
    assert all(e["time"].endswith("Z") and e["kind"] == "log" for e in entries)
    assert lines(p) == [canonical_json(e) + b"\n" for e in entries]
    assert [e for _, e in read_entries(p)] == entries
    assert verify_ledger(p) == LedgerHead(entries=3, head=entries[-1]["hash"])


def test_head_property_tracks_appends(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.jsonl") as led:
        assert led.head == LedgerHead(0, GENESIS)
        e = led.append("run.start")
        assert e["data"] == {}
        assert led.head == LedgerHead(1, e["hash"])


def test_resume_after_reopen(tmp_path: Path) -> None:
    p = tmp_path / "ledger.jsonl"
    first = make_ledger(p, 3)
    with Ledger(p) as led:
        assert led.head == LedgerHead(3, first[-1]["hash"])
        e = led.append("train.end", {"ok": True})
    assert e["seq"] == 3 and e["prev"] == first[-1]["hash"]
    assert verify_ledger(p) == LedgerHead(4, e["hash"])


def test_reopening_a_tampered_ledger_refuses_to_append(tmp_path: Path) -> None:
    p = tmp_path / "ledger.jsonl"
    make_ledger(p, 3)
    content = lines(p)
    write_lines(p, [content[0], content[2]])
    before = p.read_bytes()
    with pytest.raises(LedgerVerificationError) as info:
        Ledger(p)
    assert info.value.line == 2
    assert p.read_bytes() == before


def test_ledger_creates_parent_directories(tmp_path: Path) -> None:
    p = tmp_path / "out" / "bastion" / "ledger.jsonl"
    make_ledger(p, 1)
    assert verify_ledger(p).entries == 1


def test_append_after_close_is_an_error(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.jsonl")
    led.close()
    led.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        led.append("x")


def test_unrepresentable_entry_writes_nothing(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p) as led:
        led.append("ok", {"a": 1})
        for bad in ({"loss": float("nan")}, {"obj": object()}, {"big": 2**64}):
            with pytest.raises(LedgerError, match="not representable"):
                led.append("log", bad)
        led.append("ok", {"a": 2})
    assert verify_ledger(p).entries == 2


def test_unknown_fsync_policy(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="unknown fsync policy"):
        Ledger(tmp_path / "l.jsonl", fsync="sometimes")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("policy", "interval", "on_append", "on_close"),
    [("always", 5.0, 4, 1), ("never", 5.0, 0, 0), ("interval", 3600.0, 0, 1), ("interval", 0.0, 4, 1)],
)
def test_fsync_policies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, interval: float, on_append: int, on_close: int
) -> None:
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    led = Ledger(tmp_path / "l.jsonl", fsync=policy, fsync_interval=interval)  # type: ignore[arg-type]
    for i in range(4):
        led.append("log", {"i": i})
    assert len(synced) == on_append
    led.close()
    assert len(synced) == on_append + on_close


def test_concurrent_appends_form_one_valid_chain(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    threads_n, per_thread = 8, 60
    barrier = threading.Barrier(threads_n)
    with Ledger(p, fsync="never") as led:

        def worker(t: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                led.append("log", {"thread": t, "i": i})

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        head = led.head
    assert verify_ledger(p) == head
    assert head.entries == threads_n * per_thread
    entries = [e for _, e in read_entries(p)]
    for t in range(threads_n):
        assert [e["data"]["i"] for e in entries if e["data"]["thread"] == t] == list(range(per_thread))


def test_missing_ledger(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="ledger not found"):
        verify_ledger(tmp_path / "nope.jsonl")


def test_empty_ledger_verifies_as_genesis(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    p.write_bytes(b"")
    assert verify_ledger(p) == LedgerHead(0, GENESIS)
    err = broken_at(p, expected_entries=2)
    assert err.line == 1 and "truncated" in str(err)


# --- tamper detection: each case names the first offending line ----------------------------------

Tamper = Callable[[list[bytes]], list[bytes]]


def _edit_data(c: list[bytes]) -> list[bytes]:
    c[2] = c[2].replace(b'"step":2', b'"step":20')
    return c


def _edit_hash_too(c: list[bytes]) -> list[bytes]:
    c[2] = rehash(c[2], data={"step": 2, "loss": 0.0})
    return c


def _edit_kind(c: list[bytes]) -> list[bytes]:
    c[3] = c[3].replace(b'"kind":"log"', b'"kind":"checkpoint"')
    return c


def _delete_middle(c: list[bytes]) -> list[bytes]:
    del c[2]
    return c


def _delete_first(c: list[bytes]) -> list[bytes]:
    del c[0]
    return c


def _swap(c: list[bytes]) -> list[bytes]:
    c[2], c[3] = c[3], c[2]
    return c


def _insert_copy(c: list[bytes]) -> list[bytes]:
    c.insert(3, c[1])
    return c


def _insert_forged(c: list[bytes]) -> list[bytes]:
    forged = {"seq": 3, "time": "2026-01-01T00:00:00.000000Z", "kind": "log", "data": {}, "prev": "f" * 64}
    forged["hash"] = entry_hash(forged)
    c.insert(3, canonical_json(forged) + b"\n")
    return c


def _non_json(c: list[bytes]) -> list[bytes]:
    c.insert(4, b"## operator note: all good\n")
    return c


def _blank(c: list[bytes]) -> list[bytes]:
    c.insert(1, b"\n")
    return c


def _array(c: list[bytes]) -> list[bytes]:
    c[1] = b"[1, 2, 3]\n"
    return c


def _missing_field(c: list[bytes]) -> list[bytes]:
    entry = json.loads(c[2])
    del entry["time"]
    c[2] = canonical_json(entry) + b"\n"
    return c


def _bad_utf8(c: list[bytes]) -> list[bytes]:
    c[2] = c[2].replace(b'"log"', b'"l\xffg"')
    return c


def _truncate_mid_last(c: list[bytes]) -> list[bytes]:
    c[-1] = c[-1][:40]
    return c


def _truncate_mid_line_4(c: list[bytes]) -> list[bytes]:
    return [*c[:3], c[3][:25]]


def _reformat(c: list[bytes]) -> list[bytes]:
    # Same JSON, different spacing: content still matches its hash, so this is NOT tampering.
    c[1] = json.dumps(json.loads(c[1]), indent=None, separators=(", ", ": ")).encode() + b"\n"
    return c


@pytest.mark.parametrize(
    ("tamper", "line", "reason"),
    [
        (_edit_data, 3, "was edited"),
        (_edit_hash_too, 4, "does not link to the previous one"),
        (_edit_kind, 4, "was edited"),
        (_delete_middle, 3, "sequence number is 3, expected 2"),
        (_delete_first, 1, "sequence number is 1, expected 0"),
        (_swap, 3, "sequence number is 3, expected 2"),
        (_insert_copy, 4, "sequence number is 1, expected 3"),
        (_insert_forged, 4, "does not link"),
        (_non_json, 5, "not valid JSON"),
        (_blank, 2, "not valid JSON"),
        (_array, 2, "not a ledger entry"),
        (_missing_field, 3, "lacks field(s) ['time']"),
        (_bad_utf8, 3, "not valid JSON"),
        (_truncate_mid_last, 6, "last line is torn"),
        (_truncate_mid_line_4, 4, "last line is torn"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_tampering_is_detected_at_the_right_line(tmp_path: Path, tamper: Tamper, line: int, reason: str) -> None:
    p = tmp_path / "ledger.jsonl"
    make_ledger(p)
    write_lines(p, tamper(lines(p)))
    err = broken_at(p)
    assert err.line == line, str(err)
    assert reason in str(err)
    assert "\n  hint: " in str(err)  # every report says what to do next


# --- byte-level edits: the content still parses to the entry its hash covers, the bytes changed -----


def _dup_key(raw: bytes) -> bytes:
    # A reader that keeps the first copy of "data" would see other content than the hash covers.
    return b'{"data":{"run_id":"EVIL"},' + raw[1:]


def _reordered(raw: bytes) -> bytes:
    entry = json.loads(raw)
    return json.dumps(dict(reversed(list(entry.items()))), separators=(",", ":"), ensure_ascii=False).encode()


def _spaced(raw: bytes) -> bytes:
    return raw.replace(b'","kind":', b'", "kind":', 1)


def _u_escape(raw: bytes) -> bytes:
    return raw.replace(b'"kind":"log"', b'"kind":"\\u006cog"', 1)


# (edit, line it applies to): line 1 is step 0 / loss 1.0 (written "1"), line 2 step 1 / loss 0.5.
_EDITS: dict[str, tuple[Callable[[bytes], bytes], int]] = {
    "duplicate key": (_dup_key, 2),
    "re-ordered keys": (_reordered, 1),
    "whitespace": (_spaced, 2),
    "u-escape": (_u_escape, 2),
    "0.0 for 0": (lambda raw: raw.replace(b'"step":0', b'"step":0.0', 1), 1),
    "-0 for 0": (lambda raw: raw.replace(b'"step":0', b'"step":-0', 1), 1),
    "1E0 for 1": (lambda raw: raw.replace(b'"loss":1', b'"loss":1E0', 1), 1),
    "5e-1 for 0.5": (lambda raw: raw.replace(b'"loss":0.5', b'"loss":5e-1', 1), 2),
    "trailing space": (lambda raw: raw + b" ", 2),
    "CRLF": (lambda raw: raw + b"\r", 1),
    "BOM": (lambda raw: b"\xef\xbb\xbf" + raw, 1),
}


@pytest.mark.parametrize("what", sorted(_EDITS))
def test_every_byte_level_edit_is_reported_at_its_line(tmp_path: Path, what: str) -> None:
    p = tmp_path / "ledger.jsonl"
    entries = make_ledger(p, 2)
    c = lines(p)
    edit, line = _EDITS[what]
    edited = edit(c[line - 1][:-1])
    assert edited != c[line - 1][:-1]  # the edit applies
    if what != "duplicate key":  # the parsed content is unchanged: only the bytes tell
        assert json.loads(edited.decode("utf-8-sig")) == json.loads(c[line - 1])
    c[line - 1] = edited + b"\n"
    write_lines(p, c)
    err = broken_at(p, expected_head=entries[-1]["hash"], expected_entries=2)
    assert err.line == line, str(err)
    assert any(
        text in err.message for text in ("not the canonical JSON", "same key twice", "byte-order mark", "CR LF")
    ), err.message


def test_whole_last_entry_removed_needs_the_signed_head(tmp_path: Path) -> None:
    p = tmp_path / "ledger.jsonl"
    entries = make_ledger(p)
    write_lines(p, lines(p)[:-1])
    # The remaining chain is intact: only the head recorded in the statement reveals the truncation.
    assert verify_ledger(p) == LedgerHead(N - 1, entries[-2]["hash"])
    err = broken_at(p, expected_entries=N, expected_head=entries[-1]["hash"])
    assert err.line == N  # the first missing line
    assert f"has {N - 1} entries but the signed statement records {N}" in str(err)
    assert "truncated" in str(err)
    err = broken_at(p, expected_head=entries[-1]["hash"])
    assert err.line == N - 1 and "head is" in str(err)


def test_rewritten_last_entry_needs_the_signed_head(tmp_path: Path) -> None:
    p = tmp_path / "ledger.jsonl"
    entries = make_ledger(p)
    c = lines(p)
    c[-1] = rehash(c[-1], data={"step": 5, "loss": 0.0001})
    write_lines(p, c)
    assert verify_ledger(p).entries == N
    err = broken_at(p, expected_head=entries[-1]["hash"], expected_entries=N)
    assert err.line == N and "signed statement records" in str(err)


def test_appended_entries_after_signing_are_detected(tmp_path: Path) -> None:
    p = tmp_path / "ledger.jsonl"
    entries = make_ledger(p)
    with Ledger(p) as led:
        led.append("log", {"after": "signing"})
    err = broken_at(p, expected_entries=N, expected_head=entries[-1]["hash"])
    assert err.line == N + 1 and "extended" in str(err)


def test_matching_expectations_pass(tmp_path: Path) -> None:
    p = tmp_path / "ledger.jsonl"
    entries = make_ledger(p)
    assert verify_ledger(p, expected_head=entries[-1]["hash"], expected_entries=N) == LedgerHead(N, entries[-1]["hash"])


def test_sync_is_one_fsync_for_a_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    p = tmp_path / "audit.jsonl"
    led = Ledger(p, fsync="never")
    for i in range(5):
        led.append("decision", {"i": i})
    assert synced == []
    led.sync()
    assert len(synced) == 1
    assert verify_ledger(p).entries == 5  # everything appended so far is on disk and verifies
    led.close()
    with pytest.raises(LedgerError, match="closed"):
        led.sync()


# --- the fast append writes what the rfc8785 writer wrote -------------------------------------


def rfc8785_line(entry: dict[str, Any]) -> bytes:
    """An entry as the original writer serialized it: rfc8785 over the body, then over the whole entry."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return rfc8785.dumps({**body, "hash": hashlib.sha256(rfc8785.dumps(body)).hexdigest()}) + b"\n"


_metric = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53) + 1, 2**53 - 1)
_data = st.recursive(
    st.none() | st.booleans() | _metric | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=12,
).map(lambda v: {"value": v}) | st.fixed_dictionaries(
    {"step": st.integers(0, 10**6), "epoch": st.floats(0, 100)},
    optional={"metrics": st.dictionaries(st.sampled_from(["loss", "grad_norm", "learning_rate", "epoch"]), _metric)},
)


@settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["log", "run.start", "é\U0001f600", 'q"\n']), _data), min_size=1, max_size=5))
def test_append_writes_the_rfc8785_bytes(tmp_path: Path, items: list[tuple[str, dict[str, Any]]]) -> None:
    p = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    with Ledger(p, fsync="never") as led:
        entries = [led.append(kind, data) for kind, data in items]
    assert lines(p) == [rfc8785_line(e) for e in entries]
    assert [entry for _, entry in read_entries(p)] == entries
    assert verify_ledger(p) == LedgerHead(entries=len(items), head=entries[-1]["hash"])


def test_a_ledger_written_by_the_rfc8785_writer_verifies_and_resumes(tmp_path: Path) -> None:
    p = tmp_path / "old.jsonl"
    prev, raw = GENESIS, []
    for seq in range(4):
        entry: dict[str, Any] = {
            "seq": seq,
            "time": f"2026-11-25T21:00:0{seq}.000000Z",
            "kind": "log",
            "data": {"step": seq, "epoch": seq / 3, "metrics": {"loss": 2.5 - seq * 1e-3, "learning_rate": 5e-05}},
            "prev": prev,
        }
        line = rfc8785_line(entry)
        raw.append(line)
        prev = json.loads(line)["hash"]
    p.write_bytes(b"".join(raw))
    assert verify_ledger(p, expected_head=prev, expected_entries=4) == LedgerHead(entries=4, head=prev)
    with Ledger(p) as led:
        new = led.append("log", {"step": 4, "metrics": {"loss": 1e-7}})
    assert new["prev"] == prev and new["seq"] == 4
    assert lines(p)[:4] == raw
    assert lines(p)[4] == rfc8785_line(new)
    assert verify_ledger(p).head == new["hash"]


def test_integral_floats_beyond_2_to_the_53_verify(tmp_path: Path) -> None:
    # Trainer's last log carries total_flos, a float that passes 2**53 for any real model: RFC 8785
    # writes it as plain digits, which must read back as that float for the hash to be checked.
    p = tmp_path / "l.jsonl"
    with Ledger(p) as led:
        e = led.append("log", {"metrics": {"total_flos": 3.5e17, "neg": -float(2**60), "edge": float(2**53)}})
    assert b'"total_flos":350000000000000000' in lines(p)[0]
    assert verify_ledger(p) == LedgerHead(entries=1, head=e["hash"])
    assert next(read_entries(p))[1]["data"]["metrics"]["total_flos"] == 3.5e17


# --- submit: written off the caller's thread, in order ------------------------------------------


def test_submitted_entries_are_written_in_order_between_appends(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p) as led:
        led.append("run.start", {})
        for i in range(5):
            led.submit("log", {"step": i, "loss": 1.5 / (i + 1)})
        mid = led.append("checkpoint", {"step": 5})  # writes the submitted ones first
        assert mid["seq"] == 6
        led.submit("log", {"step": 6})
        assert led.head.entries == 8  # head includes what was submitted
        led.submit("log", {"step": 7})
    kinds = [(e["kind"], e["data"].get("step")) for _, e in read_entries(p)]
    assert kinds == [("run.start", None)] + [("log", i) for i in range(5)] + [("checkpoint", 5), ("log", 6), ("log", 7)]
    assert verify_ledger(p).entries == 9


def test_the_writer_thread_writes_submitted_entries_without_another_call(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    led = Ledger(p, fsync="never")
    try:
        led.submit("log", {"step": 1})
        deadline = time.monotonic() + 10 * Ledger.SUBMIT_WRITE_INTERVAL + 5
        while not p.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [e["data"] for _, e in read_entries(p)] == [{"step": 1}]
    finally:
        led.close()
    assert led._writer is not None and not led._writer.is_alive()


def test_submit_with_fsync_always_writes_before_returning(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p, fsync="always") as led:
        led.submit("log", {"step": 1})
        assert len(lines(p)) == 1
        assert led._writer is None


def test_a_submitted_entry_that_cannot_be_written_is_raised_by_the_next_call(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p) as led:
        led.submit("log", {"loss": float("nan")})
        led.submit("log", {"step": 2})
        with pytest.raises(LedgerError, match="not representable"):
            led.append("next", {})
        led.append("after", {})  # raised once; the ledger goes on
    assert [e["kind"] for _, e in read_entries(p)] == ["log", "after"]
    assert verify_ledger(p).entries == 2


def test_submit_after_close_is_an_error(tmp_path: Path) -> None:
    led = Ledger(tmp_path / "l.jsonl")
    led.close()
    with pytest.raises(LedgerError, match="closed"):
        led.submit("log", {})


def test_concurrent_submits_and_appends_form_one_valid_chain(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p, fsync="never") as led:

        def work(t: int) -> None:
            for i in range(50):
                if i % 10 == 0:
                    led.append("sync", {"t": t, "i": i})
                else:
                    led.submit("log", {"t": t, "i": i})

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    entries = [e for _, e in read_entries(p)]
    assert verify_ledger(p).entries == len(entries) == 200
    for t in range(4):  # each thread's entries keep their order
        assert [e["data"]["i"] for e in entries if e["data"]["t"] == t] == list(range(50))


def test_a_failed_batch_write_leaves_the_chain_where_it_was(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p, fsync="never") as led:
        first = led.append("run.start", {})
        led.submit("log", {"step": 1})
        led.submit("log", {"step": 2})
        real = led._fh
        led._fh = _FailingFile(real)  # type: ignore[assignment]
        with pytest.raises(LedgerError, match="No space left"):  # the submitted batch's write failed
            led.append("checkpoint", {})
        assert led.head == LedgerHead(entries=1, head=first["hash"])
        led._fh = real
        after = led.append("after", {})
    assert after["seq"] == 1 and after["prev"] == first["hash"]
    assert [e["kind"] for _, e in read_entries(p)] == ["run.start", "after"]
    assert verify_ledger(p).entries == 2


class _FailingFile:
    """A ledger file whose writes fail (a full disk)."""

    closed = False

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def write(self, data: Any) -> int:
        raise OSError(28, "No space left on device")

    def fileno(self) -> int:
        return int(self.inner.fileno())


# --- hostile lines: a clean report naming the line, never a traceback ---------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"data":{"n":' + b"9" * 4301 + b"}}", "a number with 4301 digits"),
        (b'{"data":{"n":-' + b"1" * 5000 + b"}}", "digits"),
        (b'{"data":{"n":1.' + b"5" * 5000 + b"}}", "a number of"),
        (b'{"data":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nested too deeply"),
        (b'{"data":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}", "nested too deeply"),
        (b'{"data":{"n":NaN}}', "NaN (not a JSON number)"),
        (b'{"data":{"n":-Infinity}}', "-Infinity (not a JSON number)"),
        (b'{"data":{"n":1e400}}', "no canonical JSON form"),
    ],
    ids=["4301-digits", "5000-digits", "long-fraction", "deep-list", "deep-object", "nan", "-inf", "1e400"],
)
def test_hostile_lines_are_reported_not_raised(tmp_path: Path, line: bytes, reason: str) -> None:
    p = tmp_path / "ledger.jsonl"
    make_ledger(p, 2)
    c = lines(p)
    if line.startswith(b'{"data":{"n":1e400'):  # complete it into an entry so it gets to the canonical check
        line = b'{"data":{"n":1e400},"hash":"' + b"0" * 64 + b'","kind":"log","prev":"' + b"0" * 64
        line += b'","seq":0,"time":"t"}'
    write_lines(p, [*c, line + b"\n"])
    err = broken_at(p)
    assert err.line == 3 and reason in err.message, err.message
