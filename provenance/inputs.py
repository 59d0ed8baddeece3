"""Declared dataset inputs of a run (:class:`DatasetInput`) and how each is digested.

A dataset input is a file or a directory with a role (``train``, ``eval``, ``preference``). A file gets
one :class:`~bastion.provenance.datasets.DatasetDigest`; a directory (shards, ``save_to_disk``) one per
data file, its ``.json`` metadata files (``dataset_info.json``) digested whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bastion.errors import ConfigError
from bastion.provenance.datasets import JSON_SUFFIXES, DatasetDigest, hash_dataset
from bastion.provenance.hashing import hash_file, iter_files
from bastion.provenance.predicate import ROLES

METADATA = "metadata"
"""Format recorded for metadata files inside a dataset directory (``dataset_info.json``)."""


@dataclass(frozen=True)
class DatasetInput:
    """A dataset file the run reads, with its role (``train``, ``eval`` or ``preference``)."""

    path: Path
    role: str = "train"
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.role not in ROLES:
            raise ConfigError(
                f"dataset {self.path}: unknown role {self.role!r}",
                hint=f"use one of {', '.join(ROLES)}",
            )

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

    def digests(self) -> list[DatasetDigest]:
        """One digest for a dataset file; one per data file for a dataset directory.

        Inside a directory, ``.json`` files are digested whole: there they are metadata
        (``dataset_info.json``, ``state.json``) rather than arrays of records.
        """
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


def train_eval_overlap(datasets: list[DatasetDigest]) -> int | None:
    """Eval records whose digest occurs in the training data; ``None`` when any data file lacks record digests."""
    train = [d for d in datasets if d.role == "train" and d.format != METADATA]
    evals = [d for d in datasets if d.role == "eval" and d.format != METADATA]
    if not (train and evals and all(d.records is not None for d in train + evals)):
        return None
    seen = {digest for d in train for digest in d.record_digests}
    return sum(1 for d in evals for digest in d.record_digests if digest in seen)


__all__ = ["METADATA", "DatasetInput", "train_eval_overlap"]
