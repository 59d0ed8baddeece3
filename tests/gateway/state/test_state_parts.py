"""EncryptedPartStore: AES-GCM at rest, tamper/truncation detection, stale clean-up, directory locking."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from state_support import PII, contains

from bastion.gateway.state import EncryptedPartStore, StateError
from bastion.gateway.state.parts import CHUNK


def test_round_trip_across_chunks(tmp_path: Path) -> None:
    ps = EncryptedPartStore(tmp_path, secrets.token_bytes(32))
    data = PII * (3 * CHUNK // len(PII) + 7)
    with ps.writer() as w:
        for i in range(0, len(data), 100_000):
            w.write(data[i : i + 100_000])
        blob = w.commit()
    import hashlib

    assert blob.size == len(data) and blob.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join(ps.read(blob.handle)) == data
    assert contains(tmp_path, b"jane.roe@example.org") == []
    assert ps.put(b"").size == 0 and b"".join(ps.read(ps.put(b"").handle)) == b""
    ps.close()


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],  # truncated inside the last chunk
        lambda b: b[: 22 + 4 + CHUNK + 16],  # cut after a whole non-final chunk
        lambda b: b + b"\x00" * 20,  # appended bytes
        lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:],  # one bit flipped
    ],
    ids=["truncated", "cut-at-chunk", "appended", "bit-flip"],
)
def test_damaged_parts_are_refused(tmp_path: Path, damage: object) -> None:
    ps = EncryptedPartStore(tmp_path, secrets.token_bytes(32))
    blob = ps.put(PII * (CHUNK // len(PII) + 10))
    path = ps.path(blob.handle)
    path.write_bytes(damage(path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(StateError, match="damaged or was sealed under another key"):
        b"".join(ps.read(blob.handle))
    ps.close()


def test_foreign_key_parts_unreadable_and_removed(tmp_path: Path) -> None:
    a = EncryptedPartStore(tmp_path, secrets.token_bytes(32))
    blob = a.put(PII)
    a.close()
    b = EncryptedPartStore(tmp_path, secrets.token_bytes(32))
    assert not b.readable(blob.handle)
    with pytest.raises(StateError):
        b"".join(b.read(blob.handle))
    assert b.remove_stale() == 1 and not b.exists(blob.handle)
    b.close()


def test_live_writer_tmp_is_kept_dead_writer_tmp_removed(tmp_path: Path) -> None:
    ps = EncryptedPartStore(tmp_path, secrets.token_bytes(32))
    dead = tmp_path / ("a" * 32 + ".tmp")
    dead.write_bytes(b"left by a killed writer")
    with ps.writer() as live:
        live.write(PII)
        assert ps.remove_stale() == 1
        assert not dead.exists() and (tmp_path / f"{live.handle}.tmp").exists()
    assert not (tmp_path / f"{live.handle}.tmp").exists()  # discarded on exit without commit
    ps.close()


def test_ephemeral_key_needs_the_directory_to_itself(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    a = EncryptedPartStore(tmp_path)
    with pytest.raises(StateError, match="another gateway process uses the held-part directory"):
        EncryptedPartStore(tmp_path, key)
    a.close()
    b, c = EncryptedPartStore(tmp_path, key), EncryptedPartStore(tmp_path, key)  # a shared key: fine
    with pytest.raises(StateError, match="part_key_env"):
        EncryptedPartStore(tmp_path)
    b.close()
    c.close()


def test_bad_key_and_handle(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="must be 32 bytes"):
        EncryptedPartStore(tmp_path, b"short")
    ps = EncryptedPartStore(tmp_path)
    with pytest.raises(StateError, match="not a held-part handle"):
        ps.path("../../etc/passwd")
    ps.close()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 7])
@pytest.mark.parametrize("split", ["whole", "chunks", "odd", "byte-then-rest"])
def test_any_split_round_trips(tmp_path: Path, size: int, split: str) -> None:
    import hashlib

    data = hashlib.shake_256(str(size).encode()).digest(size) if size else b""
    cuts = {
        "whole": [size],
        "chunks": [CHUNK] * (size // CHUNK) + [size % CHUNK],
        "odd": [333_333] * (size // 333_333) + [size % 333_333],
        "byte-then-rest": [min(1, size), max(0, size - 1)],
    }[split]
    ps = EncryptedPartStore(tmp_path, secrets.token_bytes(32))
    with ps.writer() as w:
        pos = 0
        for n in cuts:
            w.write(data[pos : pos + n])
            pos += n
        blob = w.commit()
    assert pos == size and blob.size == size and blob.sha256 == hashlib.sha256(data).hexdigest()
    assert b"".join(ps.read(blob.handle)) == data
    ps.close()


def test_arbitrary_part_files_only_raise_state_error(tmp_path: Path) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    ps = EncryptedPartStore(tmp_path, b"\x07" * 32)
    good = ps.path(ps.put(PII * 10).handle).read_bytes()
    handle = "b" * 32

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(
        st.one_of(
            st.binary(max_size=300),
            st.builds(lambda cut, tail: good[:cut] + tail, st.integers(0, len(good)), st.binary(max_size=40)),
        )
    )
    def check(content: bytes) -> None:
        ps.path(handle).write_bytes(content)
        if content == good:
            return
        with pytest.raises(StateError):
            b"".join(ps.read(handle))

    check()
    ps.close()
