"""The spool is sealed on disk: no plaintext in the file, the plaintext read back exactly (whole, by range,
as a seekable file), and a file changed on disk between the scan and the upload refused, never read."""

from __future__ import annotations

import asyncio
import hashlib
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.gateway.errors import Refusal
from bastion.gateway.spool import SPOOL_BLOCK, Spool

SEALED = SPOOL_BLOCK + 16  # one block on disk: its ciphertext and GCM tag
RECORD = b'{"messages": [{"role": "user", "content": "Anna Berg, IBAN DE89370400440532013000"}]}\n'


def filled(tmp_path: Path, data: bytes, pieces: int = 7) -> Spool:
    spool = Spool(tmp_path)
    step = max(1, len(data) // pieces)
    for k in range(0, len(data), step):
        spool.write(data[k : k + step])
    return spool


def collect(spool: Spool, offset: int, length: int) -> bytes:
    async def run() -> bytes:
        return b"".join([c async for c in spool.aiter_range(offset, length, block=1000)])

    return asyncio.run(run())


def test_no_plaintext_reaches_the_disk(tmp_path: Path) -> None:
    data = RECORD * 30_000  # about 2.6 MB: several sealed blocks and a short last one
    spool = filled(tmp_path, data)
    spool.close_write()
    on_disk = spool.path.read_bytes()
    assert b"DE89370400440532013000" not in on_disk and b"Anna Berg" not in on_disk
    blocks = -(-len(data) // SPOOL_BLOCK)
    assert len(on_disk) == len(data) + 16 * blocks  # one GCM tag per block, nothing else
    assert spool.read_all() == data and spool.sha256 == hashlib.sha256(data).hexdigest()
    spool.discard()
    assert not spool.path.exists()


def test_another_spools_key_cannot_read_it(tmp_path: Path) -> None:
    """A spool left by a crashed process is unreadable: its key lived only in that process's memory."""
    first = filled(tmp_path, RECORD * 100)
    first.close_write()
    second = filled(tmp_path, RECORD * 100)
    second.close_write()
    second.path.write_bytes(first.path.read_bytes())
    with pytest.raises(Refusal, match="changed on disk after the scan"):
        second.read_all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(size=st.integers(0, 3 * SPOOL_BLOCK + 5), a=st.integers(0, 4 * SPOOL_BLOCK), n=st.integers(0, 2 * SPOOL_BLOCK))
def test_any_range_reads_back_exactly(tmp_path: Path, size: int, a: int, n: int) -> None:
    data = (hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1))[:size]
    spool = filled(tmp_path, data, pieces=3)
    try:
        want = data[a : a + n]
        assert b"".join(spool.blocks(a, n)) == want
        assert collect(spool, a, n) == want
        with spool.reader() as fh:
            fh.seek(a)
            assert fh.read(n) == want
            fh.seek(-min(size, 10), io.SEEK_END)
            assert fh.read() == data[-min(size, 10) :] if size else fh.read() == b""
    finally:
        spool.discard()


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], id="byte-flipped"),
        pytest.param(lambda b: b[: len(b) - 1], id="last-block-cut"),
        pytest.param(lambda b: b[:SEALED], id="blocks-removed"),
        pytest.param(lambda b: b[SEALED : 2 * SEALED] + b[:SEALED] + b[2 * SEALED :], id="blocks-swapped"),
    ],
)
def test_a_spool_changed_on_disk_is_refused(tmp_path: Path, damage: object) -> None:
    data = RECORD * 30_000
    spool = filled(tmp_path, data)
    spool.close_write()
    spool.path.write_bytes(damage(spool.path.read_bytes()))  # type: ignore[operator]
    with pytest.raises(Refusal) as info:
        spool.read_all()
    assert info.value.status == 500 and "nothing was sent" in info.value.message
    with pytest.raises(Refusal):
        collect(spool, 0, spool.size)
    with pytest.raises(Refusal), spool.reader() as fh:
        fh.read()


def test_writing_after_the_read_back_started_is_refused(tmp_path: Path) -> None:
    spool = filled(tmp_path, RECORD)
    assert spool.read_all() == RECORD
    with pytest.raises(ValueError, match="closed for writing"):
        spool.write(b"more")


_FULL_DISK_CHILD = """
import resource, sys
from pathlib import Path
from bastion.gateway.spool import SPOOL_BLOCK, Spool
resource.setrlimit(resource.RLIMIT_FSIZE, (SPOOL_BLOCK + SPOOL_BLOCK // 2, resource.RLIM_INFINITY))
spool = Spool(Path(sys.argv[1]))
try:
    spool.write(b"x" * (3 * SPOOL_BLOCK))
except OSError as exc:
    print("write:", exc.errno)
try:
    print("read back", len(spool.read_all()))
except OSError as exc:
    print("read:", exc.errno)
"""


def test_a_full_disk_fails_the_spool_and_nothing_partial_reads_back(tmp_path: Path) -> None:
    """A disk that fills up under the spool (RLIMIT_FSIZE: the kernel writes up to the limit, then EFBIG):
    the write fails, and reading back fails too; a cut block is never given out as data."""
    import errno
    import signal
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _FULL_DISK_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
        preexec_fn=lambda: signal.signal(signal.SIGXFSZ, signal.SIG_IGN),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"write: {errno.EFBIG}", f"read: {errno.EFBIG}"]
