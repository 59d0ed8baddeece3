"""Streaming file and directory hashing, checked against hashlib and coreutils' sha256sum.

Fixtures live here rather than in a conftest.py: other test folders import ``conftest`` by name.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.errors import InputError
from bastion.provenance.hashing import (
    BLOCK_SIZE,
    DirectoryDigest,
    FileDigest,
    hash_directory,
    hash_file,
    hash_path,
    iter_files,
    sha256_file,
    total_size,
)


def _det_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def det_bytes() -> Callable[..., bytes]:
    """``det_bytes(n, seed=0)``: ``n`` pseudo-random bytes, the same on every run."""
    return _det_bytes


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[..., Path]:
    """Create a directory from ``{"relative/name": content}`` and return its path."""

    def make(files: dict[str, bytes], name: str = "tree") -> Path:
        root = tmp_path / name
        root.mkdir()
        for rel, content in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
        return root

    return make


def _run_without_read_permission(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python process that cannot read files whose mode forbids it.

    As an ordinary user ``chmod 000`` is enough. root ignores file modes, so there the child runs
    with the DAC-override capabilities removed from its bounding set (``setpriv``), which makes the
    kernel enforce the mode bits for it as well: a real EACCES, not a mocked one.
    """
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def run_unprivileged() -> Callable[[str], subprocess.CompletedProcess[str]]:
    """``run_unprivileged(code)``: run Python code in a child that honours file mode bits."""
    return _run_without_read_permission


SHA256SUM = shutil.which("sha256sum")
needs_sha256sum = pytest.mark.skipif(SHA256SUM is None, reason="coreutils sha256sum not installed")

SIZES = [0, 1, 63, 64, 65, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 3 * BLOCK_SIZE + 17]


@pytest.mark.parametrize("size", SIZES)
def test_sha256_file_matches_hashlib(tmp_path: Path, det_bytes: Callable[..., bytes], size: int) -> None:
    data = det_bytes(size, seed=size)
    f = tmp_path / "blob.bin"
    f.write_bytes(data)
    seen: list[int] = []
    assert sha256_file(f, progress=seen.append) == hashlib.sha256(data).hexdigest()
    # The progress callback reports exactly the bytes read, block by block.
    assert sum(seen) == size
    assert all(0 < n <= BLOCK_SIZE for n in seen)


@needs_sha256sum
@pytest.mark.parametrize("size", [0, 5, BLOCK_SIZE + 1])
def test_sha256_file_matches_sha256sum(tmp_path: Path, det_bytes: Callable[..., bytes], size: int) -> None:
    f = tmp_path / "file with spaces.bin"
    f.write_bytes(det_bytes(size, seed=7))
    out = subprocess.run([str(SHA256SUM), "--", str(f)], capture_output=True, text=True, check=True).stdout
    assert sha256_file(f) == out.split()[0]


def test_hash_file_name_size_and_subject(tmp_path: Path) -> None:
    f = tmp_path / "adapter_model.safetensors"
    f.write_bytes(b"weights")
    d = hash_file(f)
    assert d == FileDigest(name="adapter_model.safetensors", size=7, sha256=hashlib.sha256(b"weights").hexdigest())
    assert d.as_subject() == {"name": "adapter_model.safetensors", "digest": {"sha256": d.sha256}}
    assert hash_file(f, name="sub/x.bin").name == "sub/x.bin"


def test_directory_digest_lists_every_file_by_relative_posix_name(make_tree: Callable[..., Path]) -> None:
    files = {
        "config.json": b"{}",
        "model.safetensors": b"\x00" * 1000,
        "tokenizer/tokenizer.json": b'{"v": 1}',
        "tokenizer/special/added.txt": b"<s>",
        "z-last.txt": b"",
    }
    root = make_tree(files)
    d = hash_directory(root)
    assert isinstance(d, DirectoryDigest)
    assert d.root == str(root)
    assert [f.name for f in d.files] == sorted(files)
    for f in d.files:
        assert f.sha256 == hashlib.sha256(files[f.name]).hexdigest()
        assert f.size == len(files[f.name])
    assert d.size == sum(len(v) for v in files.values())
    assert set(d.by_name()) == set(files)


def test_manifest_digest_is_the_sha256sum_manifest(make_tree: Callable[..., Path]) -> None:
    files = {"b.bin": b"bb", "a.bin": b"a", "dir/c.bin": b"ccc"}
    root = make_tree(files)
    manifest = "".join(f"{hashlib.sha256(files[n]).hexdigest()}  {n}\n" for n in sorted(files))
    assert hash_directory(root).sha256 == hashlib.sha256(manifest.encode()).hexdigest()


@needs_sha256sum
def test_manifest_digest_reproducible_with_coreutils(make_tree: Callable[..., Path]) -> None:
    root = make_tree({"model.bin": b"m" * 5000, "cfg/config.json": b"{}", "README.md": b"# x\n"})
    pipeline = "find . -type f -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum | sha256sum"
    out = subprocess.run(["bash", "-c", pipeline], cwd=root, capture_output=True, text=True, check=True).stdout
    assert hash_directory(root).sha256 == out.split()[0]


def test_one_worker_and_many_workers_agree(make_tree: Callable[..., Path], det_bytes: Callable[..., bytes]) -> None:
    root = make_tree({f"shard-{i:02d}.bin": det_bytes(10_000 + i, seed=i) for i in range(12)})
    assert hash_directory(root, workers=1) == hash_directory(root, workers=4) == hash_directory(root)


def test_progress_counts_all_bytes_of_a_directory(make_tree: Callable[..., Path]) -> None:
    root = make_tree({"a": b"x" * 3000, "b/c": b"y" * (BLOCK_SIZE + 5)})
    seen: list[int] = []
    hash_directory(root, workers=2, progress=seen.append)
    assert sum(seen) == 3000 + BLOCK_SIZE + 5 == total_size(root)


def test_excluded_names_and_relative_paths(make_tree: Callable[..., Path]) -> None:
    root = make_tree(
        {
            "model.bin": b"m",
            "bastion/ledger.jsonl": b"{}\n",
            "bastion/statement.json": b"{}",
            "logs/keep.txt": b"k",
            "logs/skip.txt": b"s",
            "nested/bastion/also-hashed.txt": b"n",
        }
    )
    # Exclusions are paths relative to the root: a deeper folder of the same name is hashed.
    names = [f.name for f in hash_directory(root, exclude=("bastion", "logs/skip.txt")).files]
    assert names == ["logs/keep.txt", "model.bin", "nested/bastion/also-hashed.txt"]
    assert total_size(root, exclude=("bastion", "logs/skip.txt")) == 3
    # Trailing slashes are tolerated in exclusion entries.
    names = [f.name for f in hash_directory(root, exclude=("bastion/", "logs/", "nested/bastion")).files]
    assert names == ["model.bin"]


def test_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    d = hash_directory(tmp_path / "empty")
    assert d.files == ()
    assert d.size == 0
    assert d.sha256 == hashlib.sha256(b"").hexdigest()


def test_symlink_inside_root_is_hashed_under_its_own_name(make_tree: Callable[..., Path]) -> None:
    root = make_tree({"real.bin": b"payload"})
    (root / "alias.bin").symlink_to("real.bin")
    d = hash_directory(root).by_name()
    assert set(d) == {"alias.bin", "real.bin"}
    assert d["alias.bin"].sha256 == d["real.bin"].sha256


def test_symlinked_file_outside_root_is_refused(make_tree: Callable[..., Path], tmp_path: Path) -> None:
    root = make_tree({"model.bin": b"m"})
    outside = tmp_path / "secret.txt"
    outside.write_text("not part of the artifact")
    (root / "link.txt").symlink_to(outside)
    with pytest.raises(InputError, match="outside the directory") as info:
        hash_directory(root)
    assert info.value.path == root / "link.txt"
    assert str(root / "link.txt") in str(info.value)
    assert "copy the file" in str(info.value)


def test_symlinked_directory_outside_root_is_refused(make_tree: Callable[..., Path], tmp_path: Path) -> None:
    root = make_tree({"model.bin": b"m"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "weights.bin").write_bytes(b"w")
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(InputError, match="outside the directory") as info:
        hash_directory(root)
    assert info.value.path == root / "linked"


def test_dangling_symlink_inside_root_is_skipped(make_tree: Callable[..., Path]) -> None:
    root = make_tree({"model.bin": b"m"})
    (root / "gone.bin").symlink_to(root / "never-existed.bin")
    assert [f.name for f in hash_directory(root).files] == ["model.bin"]


def test_unreadable_file_names_its_path(
    make_tree: Callable[..., Path], run_unprivileged: Callable[[str], subprocess.CompletedProcess[str]]
) -> None:
    root = make_tree({"ok.bin": b"fine", "locked/weights.bin": b"secret weights"})
    locked = root / "locked" / "weights.bin"
    locked.chmod(0)
    try:
        code = (
            "import sys\n"
            "from bastion.errors import InputError\n"
            "from bastion.provenance.hashing import hash_directory, sha256_file\n"
            f"for call in (lambda: sha256_file({str(locked)!r}), lambda: hash_directory({str(root)!r})):\n"
            "    try:\n"
            "        call()\n"
            "    except InputError as e:\n"
            "        print(e.path, '|', e.message)\n"
            "    else:\n"
            "        sys.exit('no error raised')\n"
        )
        result = run_unprivileged(code)
    finally:
        locked.chmod(0o644)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [f"{locked} | {locked}: permission denied while reading"] * 2


def test_read_error_other_than_permission_names_the_path() -> None:
    # Reading /proc/self/mem from offset 0 fails with EIO: a real I/O error, not a mocked one.
    with pytest.raises(InputError, match="could not read") as info:
        sha256_file("/proc/self/mem")
    assert info.value.path == Path("/proc/self/mem")


def test_missing_and_wrong_kind_paths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="file not found") as info:
        sha256_file(tmp_path / "nope.bin")
    assert info.value.path == tmp_path / "nope.bin"
    with pytest.raises(InputError, match="is a directory"):
        sha256_file(tmp_path)
    with pytest.raises(InputError, match="directory not found"):
        hash_directory(tmp_path / "nope")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(InputError, match="not a directory"):
        hash_directory(tmp_path / "f.txt")
    with pytest.raises(InputError, match="path not found"):
        hash_path(tmp_path / "nope")


def test_hash_path_file_and_directory(tmp_path: Path) -> None:
    f = tmp_path / "one.bin"
    f.write_bytes(b"1")
    single = hash_path(f)
    assert single.root == str(tmp_path)
    assert [x.name for x in single.files] == ["one.bin"]
    assert hash_path(tmp_path).by_name()["one.bin"] == single.files[0]


def test_iter_files_is_sorted_and_skips_special_files(make_tree: Callable[..., Path]) -> None:
    root = make_tree({"b/2": b"", "b/1": b"", "a": b"", "c/d/e": b""})
    os.mkfifo(root / "fifo")  # would block a naive reader forever
    # Walk order: sorted within each directory, files before subdirectories.
    assert [p.relative_to(root).as_posix() for p in iter_files(root)] == ["a", "b/1", "b/2", "c/d/e"]


def test_special_files_are_refused_not_read_forever(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file") as info:
        sha256_file(fifo)
    assert info.value.path == fifo
    with pytest.raises(InputError, match="not a regular file"):
        sha256_file("/dev/zero")
