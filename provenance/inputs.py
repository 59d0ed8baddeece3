"""Declared dataset inputs of a run (:class:`DatasetInput`) and how each is digested.

A dataset input is a file or a directory with a role (``train``, ``eval``, ``preference``). A file gets
one :class:`~bastion.provenance.datasets.DatasetDigest`; a directory (shards, ``save_to_disk``) one per
data file, its ``.json`` metadata files (``dataset_info.json``) digested whole.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.errors import ConfigError, InputError
from bastion.provenance.datasets import JSON_SUFFIXES, DatasetDigest, hash_dataset, record_digest
from bastion.provenance.hashing import hash_directory, hash_file, iter_files
from bastion.provenance.merkle import MerkleTree, leaf_hash
from bastion.provenance.predicate import ROLES

METADATA = "metadata"
"""Format recorded for metadata files inside a dataset directory (``dataset_info.json``)."""


@dataclass(frozen=True)
class Carve:
    """How a train/eval split is carved from one dataset, with ``datasets.Dataset.train_test_split`` semantics.

    Either ``test_size`` (a fraction in (0, 1): ``ceil(fraction * n)`` records, or a count) with
    ``shuffle``/``seed`` -- shuffled: ``numpy.random.default_rng(seed).permutation(n)``, the first
    ``n_test`` indices are eval, the rest train; not shuffled: the last ``n_test`` records are eval --
    or explicit ``eval_indices`` (0-based record positions; every other record is train).
    """

    test_size: float | int | None = None
    seed: int | None = None
    shuffle: bool = True
    eval_indices: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if (self.test_size is None) == (self.eval_indices is None):
            raise ConfigError(
                "a carved split needs either test_size (with seed) or eval_indices, not both",
                hint="e.g. DatasetInput.carved('train.jsonl', test_size=0.1, seed=42)",
            )
        if self.test_size is not None:
            size = self.test_size
            if isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0:
                raise ConfigError(f"carved split: test_size must be a fraction in (0, 1) or a count, not {size!r}")
            if isinstance(size, float) and size >= 1:
                raise ConfigError(f"carved split: a fractional test_size must be below 1, not {size}")
            if self.shuffle and self.seed is None:
                raise ConfigError(
                    "carved split: a shuffled split needs the seed it was carved with (otherwise it cannot be "
                    "reproduced and recorded)",
                    hint="pass the seed you gave train_test_split(seed=...)",
                )
        if self.eval_indices is not None:
            object.__setattr__(self, "eval_indices", tuple(int(i) for i in self.eval_indices))

    def indices(self, n: int, where: object) -> tuple[list[int], list[int]]:
        """``(train, eval)`` record positions for a dataset of ``n`` records."""
        if self.eval_indices is not None:
            chosen = list(self.eval_indices)
            bad = [i for i in chosen if not 0 <= i < n]
            if bad:
                raise InputError(f"carved split: eval index {bad[0]} is outside the {n} records", path=str(where))
            if len(set(chosen)) != len(chosen):
                raise InputError("carved split: eval_indices lists a record twice", path=str(where))
            taken = set(chosen)
            return [i for i in range(n) if i not in taken], chosen
        assert self.test_size is not None
        n_test = math.ceil(self.test_size * n) if isinstance(self.test_size, float) else int(self.test_size)
        if not 0 < n_test < n:
            raise InputError(
                f"carved split: test_size {self.test_size} leaves no train or no eval records of {n}", path=str(where)
            )
        n_train = n - n_test
        if not self.shuffle:
            return list(range(n_train)), list(range(n_train, n))
        try:
            import numpy as np
        except ImportError:
            raise ConfigError("a shuffled carved split needs numpy (as datasets' train_test_split does)") from None
        perm = [int(i) for i in np.random.default_rng(self.seed).permutation(n)]
        return perm[n_test:], perm[:n_test]

    def describe(self) -> dict[str, Any]:
        if self.eval_indices is not None:
            return {"method": "indices", "eval_indices": list(self.eval_indices)}
        return {"method": "train_test_split", "test_size": self.test_size, "seed": self.seed, "shuffle": self.shuffle}


@dataclass(frozen=True)
class DatasetInput:
    """A dataset file the run reads, with its role (``train``, ``eval`` or ``preference``).

    ``carve``: this input is one side of a split carved from ``path`` (see :meth:`carved`); ``role``
    says which side (``train`` or ``eval``).
    """

    path: Path
    role: str = "train"
    name: str | None = None
    carve: Carve | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.role not in ROLES:
            raise ConfigError(
                f"dataset {self.path}: unknown role {self.role!r}",
                hint=f"use one of {', '.join(ROLES)}",
            )
        if self.carve is not None and self.role not in ("train", "eval"):
            raise ConfigError(f"dataset {self.path}: a carved split side is 'train' or 'eval', not {self.role!r}")

    @classmethod
    def carved(
        cls,
        path: str | Path,
        *,
        test_size: float | int | None = None,
        seed: int | None = None,
        shuffle: bool = True,
        eval_indices: Iterable[int] | None = None,
        name: str | None = None,
    ) -> tuple[DatasetInput, DatasetInput]:
        """The train and eval sides of a split carved from one dataset (a JSON/JSONL file or a ``save_to_disk`` folder).

        Give what you gave ``datasets.Dataset.train_test_split`` (``test_size``, ``seed``, ``shuffle``), or
        the eval records' positions (``eval_indices``). Each side is recorded as a derived input: its
        parent's digest, how it was carved, its own per-record digests and Merkle root; the train/eval
        overlap is computed over the records each side really holds.
        """
        carve = Carve(
            test_size=test_size,
            seed=seed,
            shuffle=shuffle,
            eval_indices=None if eval_indices is None else tuple(eval_indices),
        )
        return cls(Path(path), "train", name, carve), cls(Path(path), "eval", name, carve)

    @classmethod
    def coerce(cls, item: DatasetInput | str | Path) -> DatasetInput:
        """A ``DatasetInput`` as is; a bare path becomes a training dataset."""
        if isinstance(item, DatasetInput):
            return item
        if isinstance(item, (str, Path)):
            return cls(Path(item))
        raise ConfigError(
            f"datasets: expected a path or DatasetInput, got {type(item).__name__}",
            hint="pass DatasetInput(path, role='train'|'eval'|'preference') or a file path",
        )

    def digests(self, parents: dict[Path, DatasetDigest] | None = None) -> list[DatasetDigest]:
        """One digest for a dataset file; one per data file for a dataset directory; one for a carved side.

        Inside a directory, ``.json`` files are digested whole: there they are metadata
        (``dataset_info.json``, ``state.json``) rather than arrays of records. ``parents`` caches the
        digest of a carved split's parent, so that both sides hash it once.
        """
        if self.carve is not None:
            cache = {} if parents is None else parents
            parent = cache.get(self.path)
            if parent is None:
                parent = cache[self.path] = _parent_digest(self.path, self.name)
            return [carved_side(parent, self.carve, self.role)]
        if not self.path.is_dir():
            return [hash_dataset(self.path, role=self.role, name=self.name)]
        out: list[DatasetDigest] = []
        prefix = self.name or self.path.name
        for f in iter_files(self.path):
            name = f"{prefix}/{f.relative_to(self.path).as_posix()}"
            if f.suffix.lower() in JSON_SUFFIXES:
                d = hash_file(f, name=name)
                out.append(
                    DatasetDigest(name=name, path=str(f), role=self.role, size=d.size, sha256=d.sha256, format=METADATA)
                )
            else:
                out.append(hash_dataset(f, role=self.role, name=name))
        return out


def _parent_digest(path: Path, name: str | None) -> DatasetDigest:
    """Per-record digests of a carved split's parent: a JSON/JSONL file, or a ``save_to_disk`` folder's rows."""
    if not path.is_dir():
        digest = hash_dataset(path, role="train", name=name)
        if digest.records is None:
            raise InputError(
                f"a carved split needs per-record digests; {digest.format} files have none",
                path=path,
                hint="carve from a JSON/JSONL file or a datasets save_to_disk folder",
            )
        return digest
    try:
        from datasets import load_from_disk
    except ImportError:
        raise ConfigError("a split carved from a dataset folder needs the datasets library", hint=str(path)) from None
    from bastion.provenance.recorder import jsonable

    try:
        rows: Sequence[Any] = load_from_disk(str(path))  # type: ignore[assignment]
    except Exception as exc:  # not a save_to_disk folder, or a DatasetDict
        raise InputError(f"cannot read the dataset folder as one datasets split: {exc}", path=path) from None
    digests = [record_digest(jsonable(row)) for row in rows]
    folder = hash_directory(path)
    return DatasetDigest(
        name=name or path.name,
        path=str(path),
        role="train",
        size=folder.size,
        sha256=folder.sha256,
        format="arrow-rows",
        records=len(digests),
        merkle_root=_root(digests),
        record_digests=digests,
    )


def _root(digests: Sequence[str]) -> str:
    return MerkleTree([leaf_hash(bytes.fromhex(d)) for d in digests]).root


def carved_side(parent: DatasetDigest, carve: Carve, side: str) -> DatasetDigest:
    """The ``side`` (``train``/``eval``) of ``parent`` carved by ``carve``, as a derived dataset digest.

    Its ``sha256`` is SHA-256 over the side's record digests, one ``"<hex>\n"`` line each in side
    order; ``records``/``merkle_root`` are the side's own; ``split`` names the parent and the carving.
    """
    assert parent.records is not None
    train, evals = carve.indices(parent.records, parent.path)
    chosen = train if side == "train" else evals
    digests = [parent.record_digests[i] for i in chosen]
    side_sha = hashlib.sha256("".join(f"{d}\n" for d in digests).encode()).hexdigest()
    return DatasetDigest(
        name=f"{parent.name}[{side}]",
        path=parent.path,
        role=side,
        size=parent.size,
        sha256=side_sha,
        format=parent.format,
        records=len(digests),
        merkle_root=_root(digests),
        record_digests=digests,
        split={
            "side": side,
            "parent": {
                "name": parent.name,
                "digest": {"sha256": parent.sha256},
                "records": parent.records,
                "merkle_root": parent.merkle_root,
            },
            **carve.describe(),
        },
    )


def train_eval_overlap(datasets: list[DatasetDigest]) -> int | None:
    """Eval records whose digest occurs in the training data; ``None`` when any data file lacks record digests."""
    train = [d for d in datasets if d.role == "train" and d.format != METADATA]
    evals = [d for d in datasets if d.role == "eval" and d.format != METADATA]
    if not (train and evals and all(d.records is not None for d in train + evals)):
        return None
    seen = {digest for d in train for digest in d.record_digests}
    return sum(1 for d in evals for digest in d.record_digests if digest in seen)


__all__ = ["METADATA", "Carve", "DatasetInput", "carved_side", "train_eval_overlap"]
