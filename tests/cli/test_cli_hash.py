"""``bastion hash``: files, model directories and datasets, human and JSON output, errors, progress bar."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run

from bastion.provenance.datasets import hash_dataset

BASTION = str(Path(sys.executable).parent / "bastion")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tiny-model"
    (d / "tokenizer").mkdir(parents=True)
    (d / "config.json").write_bytes(b'{"model_type": "llama"}')
    (d / "model.safetensors").write_bytes(b"\x01" * 4096)
    (d / "tokenizer" / "tokenizer.json").write_bytes(b'{"version": "1.0"}')
    return d


def test_file_plain_output_is_sha256sum_style(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"abc" * 1000)
    code, out, err = run(capsys, "hash", str(f))
    assert code == 0 and err == ""
    assert out == f"{sha(b'abc' * 1000)}  weights.bin  (2.9 KiB)\n"


def test_file_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    code, out, _ = run(capsys, "hash", str(f), "--json")
    assert code == 0
    assert json.loads(out) == {
        "kind": "file",
        "path": str(f),
        "name": "weights.bin",
        "digest": {"sha256": sha(b"x")},
        "size": 1,
    }


def test_directory_table_and_manifest(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hash", str(model_dir))
    assert code == 0
    names = ["config.json", "model.safetensors", "tokenizer/tokenizer.json"]
    rows = [line for line in out.splitlines() if any(line.strip().startswith(n + " ") for n in names)]
    assert len(rows) == 3
    for n in names:
        assert any(sha((model_dir / n).read_bytes()) in r and n in r for r in rows)
    manifest = "".join(f"{sha((model_dir / n).read_bytes())}  {n}\n" for n in names)
    assert f"manifest sha256: {sha(manifest.encode())}" in out
    assert "files: 3 (" in out


def test_directory_json_and_exclude(model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hash", str(model_dir), "--json", "--exclude", "tokenizer", "--workers", "1")
    assert code == 0
    doc = json.loads(out)
    assert doc["kind"] == "directory"
    assert [f["name"] for f in doc["files"]] == ["config.json", "model.safetensors"]
    assert doc["files"][1] == {
        "name": "model.safetensors",
        "digest": {"sha256": sha(b"\x01" * 4096)},
        "size": 4096,
    }
    assert doc["size"] == 4096 + len(b'{"model_type": "llama"}')


def test_dataset_records_and_merkle_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "eval.jsonl"
    f.write_text('{"q": "a", "n": 1}\n{"n": 2, "q": "b"}\n\n{"q": "c"}\n')
    expected = hash_dataset(f, role="eval")
    code, out, _ = run(capsys, "hash", str(f), "--role", "eval", "--json")
    assert code == 0
    assert json.loads(out) == {"kind": "dataset", "path": str(f), **expected.as_dict()}
    code, out, _ = run(capsys, "hash", str(f), "--dataset")
    assert code == 0
    assert "dataset: eval.jsonl (role train, format jsonl)" in out
    assert "records: 3" in out
    assert f"merkle root: {expected.merkle_root}" in out
    assert f"file sha256: {expected.sha256}" in out


def test_dataset_whole_file_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "train.csv"
    f.write_text("text\nhello\n")
    code, out, _ = run(capsys, "hash", str(f), "--dataset")
    assert code == 0
    assert "not digested per record (csv is hashed as a whole file)" in out
    code, out, _ = run(capsys, "hash", str(f), "--dataset", "--json")
    doc = json.loads(out)
    assert "records" not in doc and doc["format"] == "csv"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (lambda p: None, ["hash", "{p}/missing.bin"], "{p}/missing.bin: path not found"),
        (
            lambda p: (p / "bad.jsonl").write_text('{"ok": 1}\nnot json\n'),
            ["hash", "{p}/bad.jsonl", "--dataset"],
            "{p}/bad.jsonl:2: not valid JSON",
        ),
        (
            lambda p: (p / "bad.jsonl").write_bytes(b'{"a": "\xff"}\n'),
            ["hash", "{p}/bad.jsonl", "--role", "train"],
            "{p}/bad.jsonl:1: line is not valid UTF-8",
        ),
        (
            lambda p: (p / "nan.jsonl").write_text('{"loss": NaN}\n'),
            ["hash", "{p}/nan.jsonl", "--dataset"],
            "{p}/nan.jsonl:1: record cannot be canonicalized",
        ),
        (lambda p: (p / "d").mkdir(), ["hash", "{p}/d", "--dataset"], "{p}/d: --dataset expects a data file"),
        (
            lambda p: (p / "d").mkdir() or (p / "d" / "l").symlink_to("/etc/hostname"),
            ["hash", "{p}/d"],
            "{p}/d/l: symbolic link points outside the directory",
        ),
        (
            lambda p: (p / "l").symlink_to(p / "gone"),
            ["hash", "{p}/l"],
            "{p}/l: symbolic link points to a missing file",
        ),
        (lambda p: os.mkfifo(p / "f"), ["hash", "{p}/f", "--json"], "{p}/f: not a regular file or directory"),
    ],
    ids=["missing", "non-json-line", "bad-utf8", "nan", "dataset-dir", "symlink-outside", "broken-link", "fifo"],
)
def test_bad_input_is_one_clear_error_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: Any, args: list[str], message: str
) -> None:
    setup(tmp_path)
    code, out, err = run(capsys, *(a.format(p=tmp_path) for a in args))
    assert code == 2
    assert out == ""
    assert err.startswith("error: " + message.format(p=tmp_path))
    assert "Traceback" not in err
    assert len(err.splitlines()) <= 2  # the message and at most one hint line


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "hash", str(tmp_path), "--role", "test")
    assert code == 2 and "Invalid value for '--role'" in err
    code, _, err = run(capsys, "hash", str(tmp_path), "--workers", "0")
    assert code == 2 and "--workers" in err


def test_real_entry_point_exit_status_and_no_traceback(tmp_path: Path) -> None:
    result = subprocess.run([BASTION, "hash", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {tmp_path / 'nope'}: path not found")
    assert "Traceback" not in result.stderr
    f = tmp_path / "a.txt"
    f.write_text("a")
    ok = subprocess.run([BASTION, "hash", str(f), "--json"], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["digest"]["sha256"] == sha(b"a")


def _run_with_tty_stderr(args: list[str]) -> tuple[int, str, str]:
    """Run bastion with stderr on a pseudo-terminal and stdout on a pipe."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100"}
    proc = subprocess.Popen([BASTION, *args], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    tty_out = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the child closed the terminal
                break
            if not chunk:
                break
            tty_out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.stdout is not None
    stdout = proc.stdout.read().decode()
    return proc.wait(timeout=60), stdout, tty_out.decode(errors="replace")


@pytest.mark.slow
def test_progress_bar_on_a_terminal_never_touches_json_stdout(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:  # 48 MiB: above the progress threshold; sparse, so cheap to create
        fh.truncate(48 * 1024 * 1024)
    code, stdout, tty = _run_with_tty_stderr(["hash", str(big), "--json"])
    assert code == 0
    assert json.loads(stdout)["digest"]["sha256"] == hashlib.sha256(b"\0" * (48 * 1024 * 1024)).hexdigest()
    assert "big.bin" in tty  # the bar (label + sizes) went to the terminal
    assert "MB" in tty or "MiB" in tty
    # Small inputs and --no-progress: nothing on the terminal at all.
    small = tmp_path / "small.bin"
    small.write_bytes(b"s")
    code, stdout, tty = _run_with_tty_stderr(["hash", str(small), "--json"])
    assert code == 0 and tty == "" and json.loads(stdout)["size"] == 1
    code, stdout, tty = _run_with_tty_stderr(["hash", str(big), "--json", "--no-progress"])
    assert code == 0 and tty == ""


def test_no_progress_output_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(40 * 1024 * 1024)
    result = subprocess.run([BASTION, "hash", str(big), "--json"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == ""
    assert json.loads(result.stdout)["size"] == 40 * 1024 * 1024


def test_names_that_look_like_markup_are_printed_verbatim(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "[bold]x[red].bin").write_bytes(b"x")
    (d / "[i] y[\\i].bin").write_bytes(b"y")
    code, out, err = run(capsys, "hash", str(d))
    assert code == 0, err
    assert "[bold]x[red].bin" in out and "[i] y[\\i].bin" in out
    f = tmp_path / "[red]data.jsonl"
    f.write_text('{"a": 1}\n')
    code, out, _ = run(capsys, "hash", str(f), "--dataset")
    assert code == 0 and "dataset: [red]data.jsonl (role train" in out


def test_inclusion_proof_of_one_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.provenance.datasets import record_digest
    from bastion.provenance.merkle import leaf_hash, verify_inclusion

    records = [{"text": f"sample {i}"} for i in range(11)]
    f = tmp_path / "train.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, out, _ = run(capsys, "hash", str(f), "--proof", "6", "--json")
    assert code == 0
    doc = json.loads(out)
    pr = doc["proof"]
    assert pr["record_sha256"] == record_digest(records[6])
    assert pr["root"] == doc["merkle_root"] and pr["size"] == 11 and pr["verified"] is True
    # The proof checks out independently: from the record itself, the path and the root alone.
    leaf = leaf_hash(bytes.fromhex(record_digest(records[6])))
    assert verify_inclusion(leaf, 6, 11, pr["path"], doc["merkle_root"])
    assert not verify_inclusion(leaf_hash(bytes.fromhex(record_digest(records[5]))), 6, 11, pr["path"], pr["root"])
    code, out, _ = run(capsys, "hash", str(f), "--proof", "0")
    assert code == 0 and "proof verifies against the merkle root: yes" in out


@pytest.mark.parametrize(
    ("name", "content", "index", "message"),
    [
        ("d.jsonl", '{"a": 1}\n', "1", "record index 1 is out of range: the dataset has 1 records"),
        ("d.csv", "a\n1\n", "0", "csv datasets have no per-record digests"),
    ],
)
def test_inclusion_proof_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str, index: str, message: str
) -> None:
    f = tmp_path / name
    f.write_text(content)
    code, out, err = run(capsys, "hash", str(f), "--proof", index)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {f}: {message}")
