"""BastionCallback under real multi-process training: torchrun (and accelerate launch), CPU, gloo.

Two ranks train the tiny model with the same output dir and the callback attached on both. Exactly
one ledger and one statement must come out, written by rank 0 alone, and no rank may wait on hashing
inside a training hook: rank 1 does no provenance work at all, rank 0 hashes on a background thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bastion.plugins.hf.tiny import build_tiny_model, write_demo_datasets
from bastion.provenance.hashing import hash_directory, sha256_file
from bastion.provenance.ledger import read_entries, verify_ledger
from bastion.provenance.statement import load_statement

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "ddp_train.py"
BIN = Path(sys.executable).parent
BIG_FILE_BYTES = 192 << 20  # a sparse file in the base model dir, so hashing takes a measurable while


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_"))}
    env.update(
        {
            "OMP_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "HF_DATASETS_CACHE": env.get("HF_DATASETS_CACHE", ""),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if not env["HF_DATASETS_CACHE"]:
        del env["HF_DATASETS_CACHE"]
    return env


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp-inputs")
    model = build_tiny_model(root / "model")
    with open(model / "extra-weights.bin", "wb") as fh:  # sparse: no disk, but every byte must be hashed
        fh.truncate(BIG_FILE_BYTES)
    write_demo_datasets(root / "data")
    return model, root / "data"


LAUNCH_TIMEOUT_S = 240
"""A launch takes 15-20 s here; one that has not ended by then is hung, and is stopped and reported."""


def _stop_hung_launch(proc: subprocess.Popen[str], reports: Path) -> tuple[str, str]:
    """Ask each rank for its threads' stacks (SIGUSR1: faulthandler in ddp_train.py), then kill the launch.

    The ranks are killed by the pids they wrote, as well as by process group: a launcher may start them in
    sessions of their own, and a rank left running would hold the port and the output dir.
    """
    pids = [int(p.read_text()) for p in reports.glob("pid*") if p.read_text().strip().isdigit()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGUSR1)
    with contextlib.suppress(subprocess.TimeoutExpired):  # the dumps are written at once: this lets them reach the pipe
        proc.communicate(timeout=5)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()


def _launch(
    launcher: list[str], model: Path, data: Path, out: Path, reports: Path, *, rank1_saves_late: bool = False
) -> dict[int, dict[str, Any]]:
    cmd = [*launcher, str(SCRIPT), str(model), str(data), str(out), str(reports)]
    env = _env()
    env["BASTION_TEST_RANK1_SAVES_LATE"] = "1" if rank1_saves_late else "0"
    env["HF_DATASETS_CACHE"] = str(reports.parent / "hf-datasets-cache")
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=out.parent, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stdout, stderr = _stop_hung_launch(proc, reports)
        stacks = f"{stdout[-4000:]}\n{stderr[-12000:]}"
        pytest.fail(f"the launch did not end in {LAUNCH_TIMEOUT_S} s; the ranks' output and stacks:\n{stacks}")
    assert proc.returncode == 0, f"launcher failed ({proc.returncode}):\n{stdout[-4000:]}\n{stderr[-6000:]}"
    found = {int(p.stem.removeprefix("rank")): json.loads(p.read_text()) for p in reports.glob("rank*.json")}
    assert sorted(found) == [0, 1], f"expected reports from ranks 0 and 1, got {sorted(found)}\n{stderr[-3000:]}"
    return found


def _check_single_writer(out: Path, model: Path, ranks: dict[int, dict[str, Any]]) -> None:
    r0, r1 = ranks[0], ranks[1]
    assert r0["world_size"] == r1["world_size"] == 2
    assert "DISTRIBUTED" in r0["parallel_mode"]
    assert r0["is_world_process_zero"] and not r1["is_world_process_zero"]

    # Exactly one run record: one ledger and one statement, in <out>/bastion/, nothing else named bastion.
    record_files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if "bastion" in p.parts and p.is_file())
    assert record_files == ["bastion/ledger.jsonl", "bastion/statement.json"]

    # Rank 1 wrote nothing of the run record (seen by an audit hook on open(), not by Bastion itself);
    # rank 0 wrote both files. Rank 1 may write its own RNG state into checkpoints: that is the Trainer's.
    assert not [w for w in r1["writes"] if "bastion" in Path(w).parts], r1["writes"]
    assert "bastion/ledger.jsonl" in r0["writes"]
    assert any(w.startswith("bastion/statement.json") for w in r0["writes"]), r0["writes"]  # via a temp file
    assert r1["finalize_returned"] is None
    assert r0["finalize_returned"] == str(out / "bastion" / "statement.json")

    # The ledger is one unbroken chain whose entries match one writer's view of the run.
    statement = load_statement(out / "bastion" / "statement.json")
    pred = statement["predicate"]
    head = verify_ledger(
        out / "bastion" / "ledger.jsonl",
        expected_head=pred["ledger"]["head"],
        expected_entries=pred["ledger"]["entries"],
    )
    entries = [e for _, e in read_entries(out / "bastion" / "ledger.jsonl")]
    assert len(entries) == head.entries
    kinds = Counter(e["kind"] for e in entries)
    n_logs = len(r0["log_history"])
    checkpoints = sorted(p.name for p in out.glob("checkpoint-*"))
    assert checkpoints == ["checkpoint-2", "checkpoint-4"]
    expected = {"run.start": 1, "inputs": 1, "log": n_logs, "checkpoint": 2, "train.end": 1, "outputs": 1}
    assert dict(kinds) == expected, f"ledger kinds {dict(kinds)} != {expected}; warnings: {pred.get('warnings')}"
    assert [e["data"]["step"] for e in entries if e["kind"] == "log"] == [h["step"] for h in r0["log_history"]]
    assert len({e["data"]["run_id"] for e in entries if e["kind"] == "run.start"}) == 1
    assert pred["environment"] and pred["datasets"] and pred["metrics"]["log_entries"] == n_logs

    # Statement subjects are exactly the output files (both ranks' RNG states included, the record excluded).
    on_disk = hash_directory(out, exclude=("bastion",))
    assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == {f.name: f.sha256 for f in on_disk.files}
    assert any(s["name"] == "checkpoint-2/rng_state_1.pth" for s in statement["subject"])

    # The base model (with its 192 MiB file) was hashed, with the right digest, off the training thread.
    by_name = {f["name"]: f["digest"]["sha256"] for f in pred["base_model"]["files"]}
    assert by_name["extra-weights.bin"] == sha256_file(model / "extra-weights.bin")
    inputs_entry = next(e for e in entries if e["kind"] == "inputs")
    assert inputs_entry["data"]["base_model"]["files"] == len(by_name)


def _check_no_blocking(ranks: dict[int, dict[str, Any]], out: Path) -> None:
    r0, r1 = ranks[0], ranks[1]
    # Rank 1 never hashes: no hashing thread, and finalize() there records nothing.
    assert not [t for t in r1["threads"] if t.startswith("bastion")], r1["threads"]
    assert r1["finalize_returned"] is None
    # Rank 0 hashes on its own thread: on_train_begin returned before the inputs were recorded.
    assert any(t.startswith("bastion-hash") for t in r0["threads"]), r0["threads"]
    entries = [e for _, e in read_entries(out / "bastion" / "ledger.jsonl")]
    inputs_time = next(e["time"] for e in entries if e["kind"] == "inputs")
    inputs_at = datetime.strptime(inputs_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
    begin_returned = r0["hooks"]["on_train_begin"]["returned_at"][0]
    assert begin_returned < inputs_at, "on_train_begin waited for the base model to be hashed"
    # Nor does on_save wait: rank 1 wrote its share of every checkpoint only after rank 0's on_save had
    # returned (ordered by an event in ddp_train.py; a waiting on_save would have hung the job), and the
    # hashing thread still covered it.
    for e in entries:
        if e["kind"] == "checkpoint":
            assert "rng_state_1.pth" in {f["name"] for f in e["data"]["files"]}, e["data"]["path"]


@pytest.fixture(scope="module")
def torchrun_run(inputs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, Any]]:
    """One torchrun launch shared by the tests below. Rank 1 writes its share of each checkpoint
    (``rng_state_1.pth``) only after rank 0's on_save returned, as a rank writing a big optimizer shard
    to a slow disk might."""
    model, data = inputs
    root = tmp_path_factory.mktemp("torchrun")
    out, reports = root / "out", root / "reports"
    out.mkdir()
    launcher = [str(BIN / "torchrun"), "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}"]
    return out, _launch(launcher, model, data, out, reports, rank1_saves_late=True)


def test_torchrun_two_ranks_one_writer(inputs: tuple[Path, Path], torchrun_run: tuple[Path, dict[int, Any]]) -> None:
    out, ranks = torchrun_run
    _check_single_writer(out, inputs[0], ranks)
    _check_no_blocking(ranks, out)


def test_checkpoint_entries_cover_every_ranks_files(torchrun_run: tuple[Path, dict[int, Any]]) -> None:
    """Rank 0 hashes a checkpoint only once every rank has written its share (rank 1 is a second late)."""
    out, _ = torchrun_run
    entries = [e for _, e in read_entries(out / "bastion" / "ledger.jsonl") if e["kind"] == "checkpoint"]
    assert [e["data"]["path"] for e in entries] == ["checkpoint-2", "checkpoint-4"]
    for e in entries:
        on_disk = {f.name: f.sha256 for f in hash_directory(out / e["data"]["path"], exclude=("bastion",)).files}
        recorded = {f["name"]: f["digest"]["sha256"] for f in e["data"]["files"]}
        assert recorded == on_disk, f"{e['data']['path']}: missing {sorted(set(on_disk) - set(recorded))}"


def test_accelerate_launch_two_ranks_one_writer(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = inputs
    out, reports = tmp_path / "out", tmp_path / "reports"
    out.mkdir()
    launcher = [
        str(BIN / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes=2",
        "--num_machines=1",
        "--mixed_precision=no",
        "--dynamo_backend=no",
        "--main_process_ip=127.0.0.1",
        f"--main_process_port={_free_port()}",
    ]
    ranks = _launch(launcher, model, data, out, reports)
    _check_single_writer(out, model, ranks)
    _check_no_blocking(ranks, out)
