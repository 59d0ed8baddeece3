"""Base-model resolution: local directories, Hub ids found in a real-layout Hugging Face cache, and bad input."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bastion.errors import InputError
from bastion.plugins.unsloth.base_model import hash_base_model, model_reference, resolve_base_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def make_cache(
    cache: Path, repo_id: str, files: dict[str, bytes], *, commit: str = COMMIT, ref: str | None = "main"
) -> Path:
    """The on-disk layout huggingface_hub writes: blobs named by digest, snapshot files linking to them."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snap


def test_local_directory_is_hashed_per_file(tmp_path: Path) -> None:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text("{}")
    (d / "model.safetensors").write_bytes(b"weights")
    src = resolve_base_model(d)
    assert src.kind == "local" and src.path == d.resolve()
    digest = hash_base_model(src)
    assert digest is not None
    assert digest.by_name()["model.safetensors"].sha256 == hashlib.sha256(b"weights").hexdigest()
    assert sorted(digest.by_name()) == ["config.json", "model.safetensors"]


def test_hub_id_resolves_to_cached_snapshot_and_hashes_blobs(tmp_path: Path) -> None:
    files = {"config.json": b'{"model_type": "llama"}', "model.safetensors": b"\x00" * 1000, "sub/tok.json": b"{}"}
    snap = make_cache(tmp_path / "hub", "unsloth/tiny-test", files)
    src = resolve_base_model("unsloth/tiny-test", cache_dir=tmp_path / "hub")
    assert src.kind == "hub"
    assert src.repo_id == "unsloth/tiny-test"
    assert src.revision == COMMIT
    assert src.path == snap
    digest = hash_base_model(src)
    assert digest is not None
    assert {f.name: f.sha256 for f in digest.files} == {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    assert src.as_dict()["revision"] == COMMIT


def test_hub_id_without_marker_file_falls_back_to_cache_scan(tmp_path: Path) -> None:
    make_cache(tmp_path / "hub", "org/gguf-only", {"model-Q4_K_M.gguf": b"GGUF"})
    src = resolve_base_model("org/gguf-only", cache_dir=tmp_path / "hub")
    assert src.kind == "hub" and src.revision == COMMIT


def test_uncached_hub_id_records_only_the_id(tmp_path: Path) -> None:
    (tmp_path / "hub").mkdir()
    src = resolve_base_model("unsloth/not-downloaded", cache_dir=tmp_path / "hub")
    assert src.kind == "hub-uncached" and src.path is None
    assert hash_base_model(src) is None
    assert src.as_dict() == {
        "reference": "unsloth/not-downloaded",
        "kind": "hub-uncached",
        "repo_id": "unsloth/not-downloaded",
    }


def test_link_leaving_the_cache_folder_is_refused(tmp_path: Path) -> None:
    snap = make_cache(tmp_path / "hub", "org/m", {"config.json": b"{}"})
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"x")
    (snap / "extra.bin").symlink_to(outside)
    src = resolve_base_model("org/m", cache_dir=tmp_path / "hub")
    with pytest.raises(InputError, match="links outside its cache folder"):
        hash_base_model(src)


def test_broken_blob_link_is_reported(tmp_path: Path) -> None:
    snap = make_cache(tmp_path / "hub", "org/m", {"config.json": b"{}", "model.safetensors": b"w"})
    (snap / "model.safetensors").resolve().unlink()
    src = resolve_base_model("org/m", cache_dir=tmp_path / "hub")
    with pytest.raises(InputError, match="broken link"):
        hash_base_model(src)


@pytest.mark.parametrize("bad", ["", "  ", "/no/such/dir", "./missing", "a/b/c", "org--x/y", "bad id"])
def test_unresolvable_reference_gives_a_clear_error(bad: str) -> None:
    with pytest.raises(InputError) as err:
        resolve_base_model(bad)
    assert "base model" in str(err.value)


def test_model_reference_reads_peft_then_config() -> None:
    class Cfg:
        _name_or_path = "from-config"

    class Peft:
        base_model_name_or_path = "from-peft"

    class Plain:
        config = Cfg()

    class Wrapped(Plain):
        active_adapter = "default"

        def __init__(self) -> None:
            self.peft_config = {"default": Peft()}

    assert model_reference(Plain()) == "from-config"
    assert model_reference(Wrapped()) == "from-peft"
    assert model_reference(object()) is None


def test_cache_lookup_without_huggingface_hub_reads_the_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from bastion.provenance.models import resolve_base_model as core_resolve

    files = {"model-Q4_K_M.gguf": b"GGUF"}
    snap = make_cache(tmp_path / "hub", "org/gguf-only", files)
    make_cache(tmp_path / "hub", "org/gguf-only", {"old.gguf": b"old"}, commit="f" * 40, ref=None)
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import now raises ImportError
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    src = core_resolve("org/gguf-only")
    assert src.kind == "hub" and src.path == snap and src.revision == COMMIT  # refs/main wins over the newer one
    assert core_resolve("org/absent").kind == "hub-uncached"
    digest = hash_base_model(src)
    assert digest is not None and {f.name: f.sha256 for f in digest.files} == {
        n: hashlib.sha256(b).hexdigest() for n, b in files.items()
    }
