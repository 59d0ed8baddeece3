"""Ledger durability: short writes are cut back, a torn last line is named, and repair is recorded."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.errors import LedgerError, LedgerVerificationError
from bastion.provenance.ledger import (
    REPAIR_KIND,
    Ledger,
    LedgerTornError,
    read_entries,
    repair_ledger,
    verify_ledger,
)


class _ShortWriteFile:
    """A ledger file on a disk that fills up: writes ``room`` more bytes, then fails with ENOSPC."""

    def __init__(self, inner: Any, room: int) -> None:
        self.inner = inner
        self.room = room
        self.closed = False

    def write(self, data: Any) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = int(self.inner.write(bytes(data[: self.room])))
        self.room -= n
        return n

    def fileno(self) -> int:
        return int(self.inner.fileno())

    def close(self) -> None:
        self.closed = True
        self.inner.close()


def _whole_lines(p: Path) -> bool:
    data = p.read_bytes()
    return data == b"" or data.endswith(b"\n")


@pytest.mark.parametrize("room", [0, 1, 40, 150])
def test_a_short_write_is_cut_back_to_the_last_whole_line(tmp_path: Path, room: int) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p, fsync="never") as led:
        first = led.append("run.start", {"run": 1})
        size = p.stat().st_size
        real = led._fh
        led._fh = _ShortWriteFile(real, room)  # type: ignore[assignment]
        with pytest.raises(LedgerError) as info:
            led.append("log", {"step": 1, "note": "x" * 300})  # longer than the room left
        assert "No space left on device" in info.value.message
        assert f"still ends with its last whole entry, at byte {size}" in info.value.message
        assert p.stat().st_size == size and _whole_lines(p)  # nothing of the failed entry kept
        led._fh = real  # space was freed
        after = led.append("log", {"step": 1})
    assert after["seq"] == 1 and after["prev"] == first["hash"]
    assert verify_ledger(p).entries == 2


def test_a_short_batch_write_of_submitted_entries_is_cut_back(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p, fsync="never") as led:
        led.append("run.start", {})
        size = p.stat().st_size
        for i in range(5):
            led.submit("log", {"step": i})
        real = led._fh
        led._fh = _ShortWriteFile(real, 200)  # type: ignore[assignment]
        with pytest.raises(LedgerError, match="No space left"):
            led.append("checkpoint", {})  # writes the submitted batch first: it is cut short
        assert p.stat().st_size == size
        led._fh = real
        led.append("checkpoint", {})
    assert [e["kind"] for _, e in read_entries(p)] == ["run.start", "checkpoint"]


def test_when_the_cut_back_fails_too_the_ledger_closes_and_names_repair(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    led = Ledger(p, fsync="never")
    led.append("run.start", {})
    real = led._fh
    fake = _ShortWriteFile(real, 10)
    led._fh = fake  # type: ignore[assignment]
    led._size = -1  # ftruncate to a negative size fails (EINVAL), as it may on a broken file system
    with pytest.raises(LedgerError) as info:
        led.append("log", {"step": 1})
    assert "so the ledger is closed" in info.value.message and info.value.hint is not None
    assert f"bastion ledger repair {p}" in info.value.hint
    with pytest.raises(LedgerError, match="is closed"):
        led.append("log", {"step": 2})
    with pytest.raises(LedgerTornError):  # the 10 bytes that reached the file: a torn last line
        verify_ledger(p)
    assert repair_ledger(p) is not None
    assert verify_ledger(p).entries == 2


def test_a_torn_last_line_at_open_names_the_byte_and_the_repair_command(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p) as led:
        led.append("run.start", {})
        led.append("log", {"step": 1})
    whole = p.stat().st_size
    with open(p, "ab") as fh:
        fh.write(b'{"data":{"step":2,"ema')  # a crash mid-write
    with pytest.raises(LedgerTornError) as info:
        Ledger(p)
    err = info.value
    assert err.line == 3 and err.offset == whole
    assert f"the last line is torn: 22 bytes from byte {whole} on" in err.message
    assert f"bastion ledger repair {p}" in str(err)
    assert "pass the callback" not in str(err)


def test_repair_cuts_the_torn_line_and_records_it(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p) as led:
        led.append("run.start", {})
        last = led.append("log", {"step": 1})
    whole = p.stat().st_size
    torn = b'{"data":{"email":"ana@example.es","st'
    with open(p, "ab") as fh:
        fh.write(torn)
    done = repair_ledger(p)
    assert done is not None
    assert (done.cut_at, done.cut_bytes, done.cut_sha256) == (whole, len(torn), hashlib.sha256(torn).hexdigest())
    entries = [e for _, e in read_entries(p)]
    assert [e["kind"] for e in entries] == ["run.start", "log", REPAIR_KIND]
    repair = entries[-1]
    assert repair["prev"] == last["hash"] and repair["seq"] == 2
    assert repair["data"] == {
        "reason": "torn last line (an interrupted write) cut off",
        "cut_at_byte": whole,
        "cut_bytes": len(torn),
        "cut_sha256": hashlib.sha256(torn).hexdigest(),
    }
    assert b"ana@example.es" not in p.read_bytes()  # the digest, never the content
    assert verify_ledger(p).head == repair["hash"]
    assert repair_ledger(p) is None  # nothing left to repair
    with Ledger(p) as led:  # and the ledger is appendable again
        assert led.append("run.start", {})["seq"] == 3


def test_repair_of_a_file_that_is_only_a_torn_line(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    p.write_bytes(b'{"data":{')
    done = repair_ledger(p)
    assert done is not None and done.cut_at == 0 and done.entry["seq"] == 0
    assert verify_ledger(p).entries == 1


def test_repair_refuses_damage_other_than_a_torn_last_line(tmp_path: Path) -> None:
    p = tmp_path / "l.jsonl"
    with Ledger(p) as led:
        for i in range(3):
            led.append("log", {"step": i})
    lines = p.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"step":1', b'"step":7')
    p.write_bytes(b"".join(lines) + b'{"torn')
    before = p.read_bytes()
    with pytest.raises(LedgerVerificationError) as info:
        repair_ledger(p)
    assert info.value.line == 2 and "was edited" in info.value.message
    assert p.read_bytes() == before  # nothing was cut


# --- a real full disk: a small tmpfs (needs root to mount) --------------------------------------


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root; the injected short-write tests above cover the same path")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_full_disk_on_a_real_file_system(small_tmpfs: Path) -> None:
    p = small_tmpfs / "ledger.jsonl"
    ballast = small_tmpfs / "ballast"
    ballast.write_bytes(b"\0" * 16384)
    with Ledger(p, fsync="always") as led:
        led.append("run.start", {})
        written = 1
        with pytest.raises(LedgerError, match="No space left on device") as info:
            while True:  # ~1 KiB entries until the 64 KiB file system is full
                led.append("log", {"step": written, "pad": uuid.uuid4().hex * 30})
                written += 1
        assert "still ends with its last whole entry" in info.value.message
        assert _whole_lines(p)
        assert verify_ledger(p).entries == written
        ballast.unlink()  # the operator frees space; the same ledger object carries on
        led.append("train.end", {})
    assert verify_ledger(p).entries == written + 1
