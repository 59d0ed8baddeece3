"""Base models from the Hugging Face cache: a snapshot path (what snapshot_download() returns) or a cached Hub id.

The cache is laid out as huggingface_hub writes it: files stored once in ``blobs/`` under their
digest, ``snapshots/<commit>/`` holding relative links to them, ``refs/main`` naming the commit.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hf_helpers import StepCounter, make_trainer, read_ledger, sha256

from bastion.errors import InputError
from bastion.plugins.hf import BastionCallback
from bastion.provenance.ledger import verify_ledger
from bastion.provenance.statement import load_statement

REPO_ID = "bastion-test/tiny-llama"
COMMIT = "4b1d9c0e7f2a3b5c6d8e9f0a1b2c3d4e5f6a7b8c"


@pytest.fixture(scope="module")
def hf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model stored in a Hugging Face cache folder; returns the cache root."""
    from bastion.plugins.hf.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("hfcache")
    source = build_tiny_model(root / "build")
    cache = root / "hub"
    repo = cache / ("models--" + REPO_ID.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / COMMIT
    for f in sorted(p for p in source.rglob("*") if p.is_file()):
        blob = repo / "blobs" / sha256(f)
        blob.write_bytes(f.read_bytes())
        link = snapshot / f.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return cache


def _snapshot(cache: Path) -> Path:
    return cache / ("models--" + REPO_ID.replace("/", "--")) / "snapshots" / COMMIT


def _blob_digests(snapshot: Path) -> dict[str, str]:
    """Each snapshot file's name -> the sha256 of the blob file it links to (read from the blob itself)."""
    out = {}
    for link in snapshot.rglob("*"):
        if link.is_symlink():
            blob = (link.parent / os.readlink(link)).resolve()
            assert blob.parent.name == "blobs"
            out[link.relative_to(snapshot).as_posix()] = sha256(blob)
    return out


def test_snapshot_path_base_model_is_recorded_with_the_blobs_digests(
    hf_cache: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    snapshot = _snapshot(hf_cache)
    expected = _blob_digests(snapshot)
    assert len(expected) >= 5 and "model.safetensors" in expected
    cb = BastionCallback(base_model=snapshot, datasets=[data["train"]], strict=True)
    out = tmp_path / "out"
    trainer = make_trainer(snapshot, out, data["train"], None, [cb], max_steps=1)
    trainer.train()
    trainer.save_model()
    statement = load_statement(cb.finalize())
    pred = statement["predicate"]
    base = pred["base_model"]
    assert {f["name"]: f["digest"]["sha256"] for f in base["files"]} == expected
    assert base["path_name"] == REPO_ID
    assert base["source"]["kind"] == "hub"
    assert base["source"]["repo_id"] == REPO_ID and base["source"]["revision"] == COMMIT
    assert pred["tokenizer"] == base
    assert pred["warnings"] == [] and cb.warnings == ()
    entries = read_ledger(out / "bastion" / "ledger.jsonl")
    inputs = next(e["data"] for e in entries if e["kind"] == "inputs")
    assert inputs["base_model"]["digest"] == base["digest"]
    assert inputs["base_model"]["files"] == len(expected)
    start = next(e["data"] for e in entries if e["kind"] == "run.start")
    assert start["inputs_declared"]["base_model"] == REPO_ID
    verify_ledger(out / "bastion" / "ledger.jsonl", expected_head=pred["ledger"]["head"])


def test_cached_hub_id_is_found_offline_and_hashed(hf_cache: Path, data: dict[str, Path], tmp_path: Path) -> None:
    snapshot = _snapshot(hf_cache)
    cb = BastionCallback(base_model=REPO_ID, hf_cache_dir=hf_cache, datasets=[data["train"]], strict=True)
    trainer = make_trainer(snapshot, tmp_path / "out", data["train"], None, [cb], max_steps=1)
    trainer.train()
    trainer.save_model()
    base = load_statement(cb.finalize())["predicate"]["base_model"]
    assert {f["name"]: f["digest"]["sha256"] for f in base["files"]} == _blob_digests(snapshot)
    assert base["source"] == {
        "reference": REPO_ID,
        "kind": "hub",
        "path": "/".join(snapshot.parts[-3:]),  # named inside the cache, never the home directory
        "repo_id": REPO_ID,
        "revision": COMMIT,
    }
    source = cb.model_source("base_model")
    assert source is not None and source.revision == COMMIT


def test_uncached_hub_id_is_a_warning_or_a_strict_error(hf_cache: Path, data: dict[str, Path], tmp_path: Path) -> None:
    snapshot = _snapshot(hf_cache)
    lenient = BastionCallback(base_model="bastion-test/never-downloaded", hf_cache_dir=hf_cache)
    trainer = make_trainer(snapshot, tmp_path / "a", data["train"], None, [lenient], max_steps=1)
    trainer.train()
    trainer.save_model()
    pred = load_statement(lenient.finalize())["predicate"]
    assert pred["base_model"]["digest"] is None and pred["base_model"]["files"] == []
    assert pred["base_model"]["source"]["kind"] == "hub-uncached"
    assert any("not in the local Hugging Face cache" in w for w in pred["warnings"])

    counter = StepCounter()
    strict = BastionCallback(base_model="bastion-test/never-downloaded", hf_cache_dir=hf_cache, strict=True)
    trainer = make_trainer(snapshot, tmp_path / "b", data["train"], None, [strict, counter], max_steps=1)
    with pytest.raises(InputError, match="not in the local Hugging Face cache"):
        trainer.train()
    assert counter.steps == 0


def test_snapshot_link_leaving_the_repo_folder_is_refused(
    hf_cache: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    cache = tmp_path / "hub"
    shutil.copytree(hf_cache, cache, symlinks=True)
    snapshot = _snapshot(cache)
    outside = tmp_path / "planted.bin"
    outside.write_bytes(b"not from the hub")
    (snapshot / "extra.bin").symlink_to(outside)
    cb = BastionCallback(base_model=snapshot, strict=True)
    trainer = make_trainer(_snapshot(hf_cache), tmp_path / "out", data["train"], None, [cb], max_steps=1)
    with pytest.raises(InputError, match="links outside its cache folder"):
        trainer.train()
