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

from bastion.provenance.inputs import DatasetInput

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


def _split_files(directory: Path, split: str) -> list[Path]:
    """The files of ``directory`` that Axolotl reads for ``split`` (``datasets.load_dataset(dir, split=...)``).

    A ``save_to_disk`` DatasetDict keeps each split in its own folder; a folder of data files is
    split by the datasets library's own file-name patterns (``train-*.parquet``, ``test/``, ...).
    A folder without split-named files is all ``train``.
    """
    if (directory / "dataset_dict.json").is_file():
        return _dir_data_files(directory / split) if (directory / split).is_dir() else []
    files = _dir_data_files(directory)
    if (directory / "state.json").is_file():  # save_to_disk Dataset: one split
        return files
    try:
        from datasets.data_files import DataFilesDict, get_data_patterns
    except ImportError:  # without datasets (not an Axolotl environment): every file
        return files
    try:
        resolved = DataFilesDict.from_patterns(get_data_patterns(str(directory)), base_path=str(directory))
    except Exception:  # datasets found no data files it knows: keep every file (they are still hashed)
        return files
    chosen = {Path(str(f)).resolve() for f in resolved.get(split, [])}
    return [f for f in files if f.resolve() in chosen]


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
        split = str(_get(entry, "split") or "train").split("[", 1)[0]  # "train[:500]" reads from "train"
        files = _split_files(path, split)
        if not files:
            return [], [("input.dataset", f"{where}: directory {path} holds no data files for split {split!r}")]
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


def val_set_carve(cfg: Mapping[str, Any]) -> tuple[float | int, int | None] | None:
    """``(test_size, seed)`` when Axolotl carves its eval split from the prepared training data and Bastion can redo it.

    Axolotl 0.19 (``utils/data/shared.py: create_train_validation_split``) calls
    ``train_test_split(test_size=val_set_size, shuffle=False, seed=cfg.seed)`` on the prepared
    (tokenized) training dataset as saved in ``dataset_prepared_path``; deduplication or sharding
    before the split changes the rows, so those runs are not carved here.
    """
    raw = cfg.get("val_set_size")
    try:
        size = float(raw or 0)
    except (TypeError, ValueError):
        return None
    if size <= 0 or cfg.get("test_datasets") or cfg.get("dataset_exact_deduplication"):
        return None
    if cfg.get("dataset_shard_num") or cfg.get("streaming") or cfg.get("pretraining_dataset"):
        return None
    seed = cfg.get("seed")
    return (int(size) if size > 1 else size), (int(seed) if seed is not None else None)


def prepared_inputs(
    folders: Iterable[tuple[Path, str]],
    extra_files: Sequence[tuple[Path, str]] = (),
    carve: tuple[float | int, int | None] | None = None,
) -> list[DatasetInput]:
    """Arrow shards of the prepared dataset folders, plus other ``(file, role)`` cache files the trainer reads.

    ``carve`` (from :func:`val_set_carve`): the prepared ``train`` folder is recorded as the two sides
    of the eval split Axolotl carves from it (row by row, so the overlap is computed), not as whole shards.
    """
    inputs: list[DatasetInput] = []
    seen: set[str] = set()
    carved: list[Path] = []
    for folder, role in folders:
        if carve is not None and role == "train" and not carved:
            test_size, seed = carve
            inputs.extend(
                DatasetInput.carved(
                    folder, test_size=test_size, seed=seed, shuffle=False, name=f"prepared/{folder.name}"
                )
            )
            carved.append(folder.resolve())
            seen.update(str(f.resolve()) for f in folder.glob("*.arrow"))
            continue
        for f in sorted(folder.glob("*.arrow")):
            key = str(f.resolve())
            if key not in seen:
                seen.add(key)
                inputs.append(DatasetInput(f, role=role, name=f"prepared/{folder.name}/{f.name}"))
    for f, role in extra_files:
        key = str(f.resolve())
        if any(f.resolve().is_relative_to(c) for c in carved):
            continue
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
    "val_set_carve",
]
