"""Record ``axolotl merge-lora`` in the training run's record.

Axolotl 0.19's default (memory-efficient) merge reads the base model and the adapter shard by shard
and writes ``<output_dir>/merged/`` without loading a model, so no plugin hook runs after it: the
only plugin call in that process is ``register`` (at config load). ``register`` therefore wraps
``axolotl.cli.merge_lora.do_merge_lora`` (the function both merge methods go through), and the
wrapper records the merge once Axolotl has written it, with the validated config.

The training record in ``<output_dir>/bastion/`` must exist and its ledger must verify up to the head
its statement records. The recorder then appends a ``merge`` entry (digests of the merged files, the
base model and the adapter) and a new ``outputs`` entry to the run's ledger, rewrites
``bastion/statement.json`` so that it describes the output directory as it now is (merged model
included), re-signs it when ``bastion_signing`` is set, and gives ``merged/`` its own record
(``merged/bastion/``: statement, copy of the ledger, signatures) so the merged model can be shipped
and verified on its own.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bastion.errors import BastionError, InputError
from bastion.provenance.hashing import hash_directory, hash_path
from bastion.provenance.recorder import RunRecorder
from bastion.provenance.statement import RECORD_DIR

LEDGER_NAME = "ledger.jsonl"
STATEMENT_NAME = "statement.json"
BUNDLE_NAME = "statement.sigstore.json"
MERGED_DIR = "merged"
DEFAULT_OUTPUT_DIR = "./model-out"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _files(digest: Any) -> list[dict[str, object]]:
    return [f.as_subject() for f in sorted(digest.files, key=lambda f: f.name)]


def _say(message: str) -> None:
    print(f"bastion: {message}", file=sys.stderr, flush=True)


_WRAPPED = "__bastion_merge_recorder__"


def install_merge_recorder() -> bool:
    """Wrap ``axolotl.cli.merge_lora.do_merge_lora`` so the merge is recorded right after it returns.

    Idempotent. Returns ``False`` when that function is not there (another Axolotl layout); the merge
    can then be recorded with :func:`record_merge` directly.
    """
    try:
        import axolotl.cli.merge_lora as merge_cli
    except ImportError:
        return False
    original = getattr(merge_cli, "do_merge_lora", None)
    if original is None:
        return False
    if getattr(original, _WRAPPED, False):
        return True

    @functools.wraps(original)
    def do_merge_lora(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        cfg = kwargs.get("cfg", args[0] if args else None)
        if cfg is not None:
            record_after_merge(cfg)
        return result

    setattr(do_merge_lora, _WRAPPED, True)
    merge_cli.do_merge_lora = do_merge_lora
    return True


def record_after_merge(cfg: Mapping[str, Any]) -> None:
    """Record the merge Axolotl just wrote for ``cfg``; exit with status 2 and a clear message if that fails."""
    if cfg.get("bastion_record_merge") is False or int(cfg.get("local_rank") or 0) != 0:
        return
    out = Path(str(cfg.get("output_dir") or DEFAULT_OUTPUT_DIR))
    try:
        paths = record_merge(
            out,
            base_model=cfg.get("base_model"),
            adapter_dir=cfg.get("lora_model_dir") or out,
            signing=cfg.get("bastion_signing"),
            method=str(cfg.get("merge_method") or "memory_efficient"),
        )
    except BastionError as exc:
        _say(f"error: the merged model was written but not recorded: {exc}")
        raise SystemExit(2) from None
    _say(f"merge recorded in {paths[0].parent} and {paths[1].parent}")


def record_merge(
    output_dir: str | Path,
    *,
    base_model: Any,
    adapter_dir: str | Path,
    signing: Mapping[str, Any] | None = None,
    method: str = "memory_efficient",
) -> tuple[Path, Path]:
    """Extend the run record in ``output_dir`` with the merge into ``output_dir/merged``.

    Returns the paths of the updated training statement and of the merged model's statement.
    Raises :class:`~bastion.errors.BastionError` subclasses naming the file that is missing or broken.
    """
    out = Path(output_dir)
    merged = out / MERGED_DIR
    record = out / RECORD_DIR
    statement_path = record / STATEMENT_NAME
    if not statement_path.is_file():
        raise InputError(
            "no training run record to extend",
            path=statement_path,
            hint="train with the Bastion plugin enabled (plugins: [bastion.plugins.axolotl.BastionPlugin]) "
            "before merging",
        )
    signing_cfg = None
    if signing:
        from bastion.plugins.axolotl.args import check_signing

        try:
            signing_cfg = check_signing(dict(signing))
        except ValueError as exc:
            raise InputError(str(exc), hint="fix bastion_signing in the Axolotl config") from None

    if signing_cfg is None and (record / BUNDLE_NAME).exists():
        raise InputError(
            "the training record is signed but no bastion_signing is set for merge-lora: "
            "the updated record could not be re-signed",
            path=record / BUNDLE_NAME,
            hint="run merge-lora with the same config (bastion_signing included) used for training, "
            "or set bastion_record_merge: false to leave the record alone",
        )
    # Reopening verifies the ledger up to the head the statement (possibly signed) vouches for.
    recorder = RunRecorder.reopen(out, signing=signing_cfg)
    if not merged.is_dir():
        raise InputError("merged model directory not found", path=merged, hint="run `axolotl merge-lora` first")
    merged_digest = hash_directory(merged, exclude=(RECORD_DIR,))
    if not merged_digest.files:
        raise InputError("merged model directory is empty", path=merged)
    adapter = Path(str(adapter_dir))
    adapter_files = [
        f for f in ("adapter_model.safetensors", "adapter_model.bin", "adapter_config.json") if (adapter / f).is_file()
    ]
    adapter_entry = {
        "path_name": adapter.name,
        "files": [
            {"name": name, "digest": {"sha256": hash_path(adapter / name).files[0].sha256}} for name in adapter_files
        ],
    }
    base_entry: dict[str, Any] | None = None
    if base_model and Path(str(base_model)).exists():
        base_digest = hash_path(Path(str(base_model)))
        base_entry = {"path_name": Path(str(base_model)).name, "digest": {"sha256": base_digest.sha256}}
    merge_info: dict[str, Any] = {
        "path": MERGED_DIR,
        "method": method,
        "merged_at": _now(),
        "digest": {"sha256": merged_digest.sha256},
        "base_model": base_entry,
        "adapter": adapter_entry,
        "training_statement": {"sha256": hashlib.sha256(statement_path.read_bytes()).hexdigest()},
    }

    recorder.add_entry("merge", {**merge_info, "files": _files(merged_digest)}, details=merge_info)
    # The merged model's own record comes first: it sits inside the output directory, so (like every
    # nested ``bastion`` folder) it is signed content of the training record and must be final before
    # the training statement is written. Its ledger copy ends at the merge entry.
    merged_statement = recorder.copy_record(merged)
    recorder.seal()
    return statement_path, merged_statement


__all__ = ["MERGED_DIR", "install_merge_recorder", "record_after_merge", "record_merge"]
