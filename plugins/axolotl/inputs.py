"""Find a run's real inputs in a resolved Axolotl config: base model, tokenizer, dataset files.

Axolotl reads a dataset ``path`` as a local file, a local directory (``load_from_disk`` output, or
data files read with ``load_dataset``), or a hub/remote name. Only local files can be hashed; anything
else is reported as a problem (a warning, or an error with ``bastion_strict``). Besides the source
files, the tokenized dataset Axolotl caches under ``dataset_prepared_path`` (and trains on when it is
reused) is hashed too: its Arrow shards are added as inputs named ``prepared/<hash>/<file>``.

Nothing here imports Axolotl except :func:`prepared_dataset_dirs`, which asks Axolotl itself for the
cache folder name so that it cannot drift from the version in use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.plugins.hf.callback import DatasetInput

logger = logging.getLogger("bastion")

RL_PREFERENCE = ("dpo", "ipo", "orpo", "kto", "simpo")
"""``rl:`` values whose datasets are preference pairs."""

# Files inside a dataset directory that describe it rather than hold records.
_METADATA_NAMES = {"dataset_info.json", "state.json", "dataset_dict.json", "readme.md", ".gitattributes"}


@dataclass
class ResolvedInputs:
    """What :func:`resolve_inputs` found."""

    base_model: Path | None = None
    tokenizer: Path | None = None
    datasets: list[DatasetInput] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    """``(code, message)`` for inputs that cannot be hashed (hub ids, missing files)."""


def _get(obj: Any, key: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key)
    return getattr(obj, key, None)


def dataset_role(cfg: Mapping[str, Any], test: bool = False) -> str:
    """``eval`` for ``test_datasets``; ``preference`` for the datasets of a preference (``rl:``) run."""
    if test:
        return "eval"
    rl = cfg.get("rl")
    rl_name = str(getattr(rl, "value", rl) or "").lower()
    return "preference" if rl_name in RL_PREFERENCE else "train"


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [value]
    return list(value)


def _dir_data_files(directory: Path) -> list[Path]:
    """Record-holding files of a dataset directory (``save_to_disk`` shards or data files)."""
    found = []
    for f in sorted(directory.rglob("*")):
        rel = f.relative_to(directory)
        if any(part.startswith(".") for part in rel.parts) or not f.is_file():
            continue
        if f.name.lower() in _METADATA_NAMES or f.suffix.lower() in (".lock", ".py"):
            continue
        found.append(f)
    return found


def _dataset_inputs(entry: Any, role: str, index: int, key: str) -> tuple[list[DatasetInput], list[tuple[str, str]]]:
    path_value = _get(entry, "path")
    where = f"{key}[{index}].path"
    if not path_value:
        return [], [("input.dataset", f"{where}: no path given")]
    path = Path(str(path_value)).expanduser()
    data_files = [Path(str(f)).expanduser() for f in _as_list(_get(entry, "data_files"))]
    if path.is_file():
        return [DatasetInput(path, role=role, name=path.name)], []
    if path.is_dir():
        inputs: list[DatasetInput] = []
        problems: list[tuple[str, str]] = []
        if data_files:
            for df in data_files:
                candidate = df if df.is_file() else path / df
                if candidate.is_file():
                    inputs.append(DatasetInput(candidate, role=role, name=f"{path.name}/{df.as_posix()}"))
                else:
                    problems.append(("input.dataset", f"{key}[{index}].data_files: file not found: {df}"))
            return inputs, problems
        files = _dir_data_files(path)
        if not files:
            return [], [("input.dataset", f"{where}: directory {path} holds no data files")]
        for f in files:
            inputs.append(DatasetInput(f, role=role, name=f"{path.name}/{f.relative_to(path).as_posix()}"))
        return inputs, []
    return [], [
        (
            "input.not_local",
            f"{where}: {path_value!r} is not a local file or directory (hub or remote dataset); "
            "Bastion can only hash local files: download it and point path at the local copy",
        )
    ]


def resolve_inputs(cfg: Mapping[str, Any]) -> ResolvedInputs:
    """Base model, tokenizer and dataset files of a resolved (validated, normalized) Axolotl config."""
    out = ResolvedInputs()
    base = cfg.get("base_model")
    if base:
        p = Path(str(base)).expanduser()
        if p.exists():
            out.base_model = p
        else:
            out.problems.append(
                (
                    "input.not_local",
                    f"base_model: {base!r} is not a local directory (a hub id?); Bastion hashes the model files "
                    "Axolotl loads: download the snapshot and set base_model to its local path",
                )
            )
    tok = cfg.get("tokenizer_config") or base
    if tok and str(tok) != str(base):
        tp = Path(str(tok)).expanduser()
        if tp.exists():
            out.tokenizer = tp
        else:
            out.problems.append(
                ("input.not_local", f"tokenizer_config: {tok!r} is not a local path; it cannot be hashed")
            )
    seen: set[tuple[str, str]] = set()
    for key, test in (("datasets", False), ("test_datasets", True)):
        role = dataset_role(cfg, test)
        for i, entry in enumerate(_as_list(cfg.get(key))):
            inputs, problems = _dataset_inputs(entry, role, i, key)
            out.problems.extend(problems)
            for d in inputs:
                ident = (str(d.path.resolve()), d.role)
                if ident not in seen:
                    seen.add(ident)
                    out.datasets.append(d)
    return out


def prepared_dataset_dirs(cfg: Any, tokenizer_name: str) -> list[tuple[Path, str]]:
    """``(folder, role)`` of the tokenized datasets Axolotl cached for this config, if it cached them.

    Uses Axolotl's own cache-key function (``generate_dataset_hash_from_config``), so the folder is
    the one Axolotl wrote or reused. Returns ``[]`` when ``skip_prepare_dataset`` is set or the
    folders do not exist (streaming, pretraining datasets).
    """
    if cfg.get("skip_prepare_dataset"):
        return []
    try:
        from axolotl.utils.data.shared import generate_dataset_hash_from_config, get_prepared_dataset_path
    except ImportError:  # a different Axolotl layout: the source files are still recorded
        logger.debug("bastion: axolotl's dataset cache helpers not found; prepared datasets not hashed")
        return []
    found: list[tuple[Path, str]] = []
    for key, test in (("datasets", False), ("test_datasets", True)):
        entries = cfg.get(key)
        if not entries:
            continue
        try:
            ds_hash = generate_dataset_hash_from_config(cfg, entries, tokenizer_name)
            folder = Path(get_prepared_dataset_path(cfg, ds_hash))
        except Exception as exc:  # the cache key is informative; never fail the run over it
            logger.debug("bastion: could not compute the prepared dataset path: %s", exc)
            continue
        if folder.is_dir():
            found.append((folder, dataset_role(cfg, test)))
    return found


def prepared_inputs(
    folders: Iterable[tuple[Path, str]], extra_files: Sequence[tuple[Path, str]] = ()
) -> list[DatasetInput]:
    """Arrow shards of the prepared dataset folders, plus other ``(file, role)`` cache files the trainer reads."""
    inputs: list[DatasetInput] = []
    seen: set[str] = set()
    for folder, role in folders:
        for f in sorted(folder.glob("*.arrow")):
            key = str(f.resolve())
            if key not in seen:
                seen.add(key)
                inputs.append(DatasetInput(f, role=role, name=f"prepared/{folder.name}/{f.name}"))
    for f, role in extra_files:
        key = str(f.resolve())
        if key not in seen and f.is_file():
            seen.add(key)
            inputs.append(DatasetInput(f, role=role, name=f"prepared/{f.parent.name}/{f.name}"))
    return inputs


__all__ = [
    "RL_PREFERENCE",
    "ResolvedInputs",
    "dataset_role",
    "prepared_dataset_dirs",
    "prepared_inputs",
    "resolve_inputs",
]
