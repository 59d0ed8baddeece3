"""The typed run predicate: one in-memory model of a run record, shared by the recorder and its readers.

:class:`RunPredicate` is what ``bastion/statement.json`` carries as its in-toto ``predicate``; the
recorder builds it, :func:`RunPredicate.to_json` serializes it, and the verifier, the deploy policy
and ``bastion inspect`` read it back with :func:`RunPredicate.parse`, which names the first field
that is missing or of the wrong type (``predicate.datasets[1].digest.sha256: expected a string``).
The format is documented field by field in ``docs/run-record.md``.

Reading rules (v1): ``run_id`` and ``ledger`` are required; every other field may be absent (older
records, hand-built records) and then takes its empty value; fields that are present must have the
documented type; unknown top-level keys whose value is an object are kept as exports (``merge``,
``export``, or any ``record_export(kind=...)``), other unknown keys are ignored, so that a v1 reader
accepts records written by later v1 writers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion.errors import InputError

PREDICATE_TYPE = "urn:uuid:97d7e0a8-15ba-40b6-bb22-8595d8fb5559"
"""The predicateType of Bastion's training-run record, format v1 (see ``docs/run-record.md``).

A UUID URN (RFC 9562): unique without owning a domain, and stable however the project is hosted.
"""
LEGACY_PREDICATE_TYPES: tuple[str, ...] = ("https://bastion.dev/provenance/training-run/v1",)
"""Earlier names of the same v1 format, still accepted when verifying records signed before the rename."""
ACCEPTED_PREDICATE_TYPES: tuple[str, ...] = (PREDICATE_TYPE, *LEGACY_PREDICATE_TYPES)

ROLES: tuple[str, ...] = ("train", "eval", "preference")

RESERVED_NAMES = frozenset(
    {
        # ledger entry kinds the run itself writes
        "run.start",
        "run.aborted",
        "inputs",
        "log",
        "warning",
        "checkpoint",
        "checkpoint.signed",
        "train.end",
        "outputs",
        # predicate keys
        "run_id",
        "framework",
        "base_model",
        "tokenizer",
        "datasets",
        "config",
        "training_arguments",
        "environment",
        "metrics",
        "ledger",
        "overlap",
        "warnings",
        "strict",
        "started_at",
        "finished_at",
        "bastion_version",
        "previous_run",
    }
)
"""Names an export ``kind`` may not use: they would collide with the run's own ledger entries or predicate keys."""
EXPORT_KIND = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


class PredicateError(InputError):
    """A run predicate does not have the v1 shape; the message names the field."""


# ---------------------------------------------------------------------------- reading helpers


def _fail(where: str, expected: str, value: Any) -> PredicateError:
    found = "missing" if value is _MISSING else f"found {_type_name(value)}"
    return PredicateError(
        f"{where}: expected {expected}, {found}",
        hint="the run record is damaged or was not written by Bastion; re-create it from the run's output directory",
    )


class _Missing:
    pass


_MISSING: Any = _Missing()


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, "an object", value)
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "a string", value)
    return value


def _opt_str(value: Any, where: str) -> str | None:
    return None if value is None or value is _MISSING else _str(value, where)


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, "an integer", value)
    return value


def _opt_int(value: Any, where: str) -> int | None:
    return None if value is None or value is _MISSING else _int(value, where)


def _list(value: Any, where: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise _fail(where, "a list", value)
    return value


def _sha(value: Any, where: str) -> str:
    """``{"sha256": "<hex>"}`` -> the hex digest."""
    return _str(_obj(value, where).get("sha256", _MISSING), f"{where}.sha256")


def _file_refs(value: Any, where: str) -> tuple[FileRef, ...]:
    return tuple(FileRef.parse(f, f"{where}[{i}]") for i, f in enumerate(_list(value, where)))


def _strings(value: Any, where: str) -> tuple[str, ...]:
    return tuple(_str(x, f"{where}[{i}]") for i, x in enumerate(_list(value, where)))


def _digest(sha256: str) -> dict[str, str]:
    return {"sha256": sha256}


# ---------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class FileRef:
    """One file of a model or directory: its path relative to the directory and its SHA-256."""

    name: str
    sha256: str

    @classmethod
    def parse(cls, value: Any, where: str) -> FileRef:
        v = _obj(value, where)
        return cls(name=_str(v.get("name", _MISSING), f"{where}.name"), sha256=_sha(v.get("digest"), f"{where}.digest"))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "digest": _digest(self.sha256)}


@dataclass(frozen=True)
class ModelInput:
    """The base model or tokenizer: a directory's manifest digest and files, and where it came from."""

    path_name: str
    sha256: str | None
    files: tuple[FileRef, ...] = ()
    source: Mapping[str, Any] | None = None
    """For a Hugging Face Hub model: ``kind``, ``repo_id``, ``revision``, ``commit`` (absent for a local path)."""

    @classmethod
    def parse(cls, value: Any, where: str) -> ModelInput | None:
        if value is None or value is _MISSING:
            return None
        v = _obj(value, where)
        digest = v.get("digest")
        source = v.get("source", _MISSING)
        return cls(
            path_name=_str(v.get("path_name", _MISSING), f"{where}.path_name"),
            sha256=None if digest is None else _sha(digest, f"{where}.digest"),
            files=tuple(
                FileRef.parse(f, f"{where}.files[{i}]")
                for i, f in enumerate(_list(v.get("files", []), f"{where}.files"))
            ),
            source=None if source is _MISSING else dict(_obj(source, f"{where}.source")),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path_name": self.path_name,
            "digest": None if self.sha256 is None else _digest(self.sha256),
            "files": [f.to_json() for f in self.files],
        }
        if self.source is not None:
            out["source"] = dict(self.source)
        return out


@dataclass(frozen=True)
class DatasetRecord:
    """One data file the run read, with its role; JSON/JSONL files also have per-record digests' Merkle root."""

    name: str
    role: str
    sha256: str
    size: int | None = None
    format: str | None = None
    records: int | None = None
    merkle_root: str | None = None
    split: Mapping[str, Any] | None = None
    """For a split carved from another dataset: how it was carved (see ``docs/run-record.md``)."""

    @classmethod
    def parse(cls, value: Any, where: str) -> DatasetRecord:
        v = _obj(value, where)
        role = _str(v.get("role", _MISSING), f"{where}.role")
        split = v.get("split", _MISSING)
        return cls(
            name=_str(v.get("name", _MISSING), f"{where}.name"),
            role=role,
            sha256=_sha(v.get("digest", _MISSING), f"{where}.digest"),
            size=_opt_int(v.get("size", _MISSING), f"{where}.size"),
            format=_opt_str(v.get("format", _MISSING), f"{where}.format"),
            records=_opt_int(v.get("records", _MISSING), f"{where}.records"),
            merkle_root=_opt_str(v.get("merkle_root", _MISSING), f"{where}.merkle_root"),
            split=None if split is _MISSING or split is None else dict(_obj(split, f"{where}.split")),
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "role": self.role, "digest": _digest(self.sha256)}
        if self.size is not None:
            out["size"] = self.size
        if self.format is not None:
            out["format"] = self.format
        if self.records is not None:
            out["records"] = self.records
            out["merkle_root"] = self.merkle_root
        if self.split is not None:
            out["split"] = dict(self.split)
        return out


@dataclass(frozen=True)
class ConfigRecord:
    """The resolved training config: where it came from, its RFC 8785 digest and its value (credentials redacted)."""

    sha256: str
    value: Any = None
    source: str | None = None
    redacted: tuple[str, ...] = ()
    """JSON-pointer paths (RFC 6901) of the values withheld as ``[REDACTED]``; never the values."""

    @classmethod
    def parse(cls, value: Any, where: str) -> ConfigRecord | None:
        if value is None or value is _MISSING:
            return None
        v = _obj(value, where)
        return cls(
            sha256=_sha(v.get("digest", _MISSING), f"{where}.digest"),
            value=v.get("value"),
            source=_opt_str(v.get("source", _MISSING), f"{where}.source"),
            redacted=_strings(v.get("redacted", []), f"{where}.redacted"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "digest": _digest(self.sha256),
            "value": self.value,
            "redacted": list(self.redacted),
        }


@dataclass(frozen=True)
class TrainingArgumentsRecord:
    """The framework's training arguments (transformers ``TrainingArguments.to_dict()``), digest and value."""

    sha256: str
    value: Mapping[str, Any]
    redacted: tuple[str, ...] = ()
    """JSON-pointer paths (RFC 6901) of the values withheld as ``[REDACTED]``; never the values."""

    @classmethod
    def parse(cls, value: Any, where: str) -> TrainingArgumentsRecord | None:
        if value is None or value is _MISSING:
            return None
        v = _obj(value, where)
        return cls(
            sha256=_sha(v.get("digest", _MISSING), f"{where}.digest"),
            value=dict(_obj(v.get("value", {}), f"{where}.value")),
            redacted=_strings(v.get("redacted", []), f"{where}.redacted"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"digest": _digest(self.sha256), "value": dict(self.value), "redacted": list(self.redacted)}


@dataclass(frozen=True)
class Metrics:
    """The last value of every logged metric, the last step, and how many log entries the ledger holds."""

    final: Mapping[str, int | float] = field(default_factory=dict)
    global_step: int = 0
    log_entries: int = 0
    non_finite: Mapping[str, str] | None = None
    """Metrics whose last value was NaN/±Infinity (not representable in canonical JSON), by name."""

    @classmethod
    def parse(cls, value: Any, where: str) -> Metrics:
        if value is None or value is _MISSING:
            return cls()
        v = _obj(value, where)
        final = _obj(v.get("final", {}), f"{where}.final")
        for key, number in final.items():
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                raise _fail(f"{where}.final.{key}", "a number", number)
        nf = v.get("non_finite", _MISSING)
        non_finite = None
        if nf is not _MISSING and nf is not None:
            non_finite = {
                str(k): _str(x, f"{where}.non_finite.{k}") for k, x in _obj(nf, f"{where}.non_finite").items()
            }
        return cls(
            final=dict(final),
            global_step=_opt_int(v.get("global_step", _MISSING), f"{where}.global_step") or 0,
            log_entries=_opt_int(v.get("log_entries", _MISSING), f"{where}.log_entries") or 0,
            non_finite=non_finite,
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "final": dict(self.final),
            "global_step": self.global_step,
            "log_entries": self.log_entries,
        }
        if self.non_finite:
            out["non_finite"] = dict(self.non_finite)
        return out


@dataclass(frozen=True)
class LedgerRef:
    """Where the run's ledger is (relative to the artifact root) and the head the record vouches for."""

    path: str
    head: str | None
    entries: int | None

    @classmethod
    def parse(cls, value: Any, where: str) -> LedgerRef:
        v = _obj(value, where)
        return cls(
            path=_opt_str(v.get("path", _MISSING), f"{where}.path") or "bastion/ledger.jsonl",
            head=_opt_str(v.get("head", _MISSING), f"{where}.head"),
            entries=_opt_int(v.get("entries", _MISSING), f"{where}.entries"),
        )

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "head": self.head, "entries": self.entries}


@dataclass(frozen=True)
class CheckpointRef:
    """For a checkpoint's own record: its training step and path inside the run's output directory."""

    step: int
    path: str

    @classmethod
    def parse(cls, value: Any, where: str) -> CheckpointRef | None:
        if value is None or value is _MISSING:
            return None
        v = _obj(value, where)
        return cls(
            step=_int(v.get("step", _MISSING), f"{where}.step"), path=_str(v.get("path", _MISSING), f"{where}.path")
        )

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "path": self.path}


@dataclass(frozen=True)
class PreviousRun:
    """An earlier, unfinished run found in the same output directory; this run's record starts a new chain.

    ``ledger_head``/``ledger_entries`` pin the old ledger (kept as ``ledger_file``) as it was found,
    and ``files`` lists what was left in the output directory then: those files are not this run's outputs.
    """

    run_id: str | None
    ledger_file: str
    ledger_head: str | None
    ledger_entries: int
    status: str
    """``aborted`` (it recorded ``run.aborted``), ``unfinished`` (killed: no end entry), ``finished``, or
    ``damaged`` (its ledger does not verify, e.g. a line torn by a kill; ``ledger_head`` is then null)."""
    files: tuple[FileRef, ...] = ()

    @classmethod
    def parse(cls, value: Any, where: str) -> PreviousRun | None:
        if value is None or value is _MISSING:
            return None
        v = _obj(value, where)
        return cls(
            run_id=_opt_str(v.get("run_id", _MISSING), f"{where}.run_id"),
            ledger_file=_str(v.get("ledger_file", _MISSING), f"{where}.ledger_file"),
            ledger_head=_opt_str(v.get("ledger_head", _MISSING), f"{where}.ledger_head"),
            ledger_entries=_int(v.get("ledger_entries", _MISSING), f"{where}.ledger_entries"),
            status=_str(v.get("status", _MISSING), f"{where}.status"),
            files=tuple(
                FileRef.parse(f, f"{where}.files[{i}]")
                for i, f in enumerate(_list(v.get("files", []), f"{where}.files"))
            ),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "ledger_file": self.ledger_file,
            "ledger_head": self.ledger_head,
            "ledger_entries": self.ledger_entries,
            "status": self.status,
            "files": [f.to_json() for f in self.files],
        }


@dataclass(frozen=True)
class NearDuplicateOverlap:
    """``overlap.near_duplicate``: eval records with a near-duplicate in the training data (MinHash/LSH).

    Present only when the run was configured to compute it (``near_duplicates:``); see
    :mod:`bastion.provenance.neardup` for the method. ``eval_records`` includes exact duplicates.
    """

    method: str
    normalisation: str
    threshold: float
    num_perm: int
    shingle_words: int
    eval_records: int
    eval_total: int
    train_total: int

    @property
    def share(self) -> float:
        """Fraction of the eval records that have a near-duplicate in the training data."""
        return self.eval_records / self.eval_total if self.eval_total else 0.0

    @classmethod
    def parse(cls, value: Any, where: str) -> NearDuplicateOverlap | None:
        if value is None or value is _MISSING:
            return None
        v = _obj(value, where)
        threshold = v.get("threshold", _MISSING)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
            raise _fail(f"{where}.threshold", "a number", threshold)
        return cls(
            method=_str(v.get("method", _MISSING), f"{where}.method"),
            normalisation=_str(v.get("normalisation", _MISSING), f"{where}.normalisation"),
            threshold=float(threshold),
            num_perm=_int(v.get("num_perm", _MISSING), f"{where}.num_perm"),
            shingle_words=_int(v.get("shingle_words", _MISSING), f"{where}.shingle_words"),
            eval_records=_int(v.get("eval_records", _MISSING), f"{where}.eval_records"),
            eval_total=_int(v.get("eval_total", _MISSING), f"{where}.eval_total"),
            train_total=_int(v.get("train_total", _MISSING), f"{where}.train_total"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "normalisation": self.normalisation,
            "threshold": self.threshold,
            "num_perm": self.num_perm,
            "shingle_words": self.shingle_words,
            "eval_records": self.eval_records,
            "eval_total": self.eval_total,
            "train_total": self.train_total,
        }


@dataclass(frozen=True)
class ExportRef:
    """A directory recorded by ``record_export`` (``kind`` = the predicate key): its folder name and details."""

    path: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any, where: str) -> ExportRef:
        v = _obj(value, where)
        return cls(
            path=_str(v.get("path", _MISSING), f"{where}.path"), details={k: x for k, x in v.items() if k != "path"}
        )

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, **self.details}


# ---------------------------------------------------------------------------- the predicate


@dataclass(frozen=True)
class RunPredicate:
    """The in-toto predicate of a Bastion training-run record (v1); see ``docs/run-record.md``."""

    run_id: str
    ledger: LedgerRef
    framework: str | None = None
    base_model: ModelInput | None = None
    tokenizer: ModelInput | None = None
    datasets: tuple[DatasetRecord, ...] = ()
    config: ConfigRecord | None = None
    training_arguments: TrainingArgumentsRecord | None = None
    environment: Mapping[str, Any] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    overlap: int | None = None
    """Eval records whose canonical digest also occurs in the training data; ``None``: not computed."""
    near_duplicate: NearDuplicateOverlap | None = None
    """Eval records with a near-duplicate in the training data; ``None``: not computed (not configured)."""
    warnings: tuple[str, ...] = ()
    strict: bool = False
    started_at: str | None = None
    finished_at: str | None = None
    bastion_version: str | None = None
    checkpoint: CheckpointRef | None = None
    previous_run: PreviousRun | None = None
    exports: Mapping[str, ExportRef] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: Any) -> RunPredicate:
        """Read a predicate (the statement's ``predicate`` object); raises :class:`PredicateError` naming the field."""
        p = "predicate"
        v = _obj(value, p)
        strict = v.get("strict", False)
        if not isinstance(strict, bool):
            raise _fail(f"{p}.strict", "true or false", strict)
        overlap = v.get("overlap", _MISSING)
        n = None
        near = None
        if overlap is not _MISSING and overlap is not None:
            ov = _obj(overlap, f"{p}.overlap")
            n = _opt_int(ov.get("train_eval_records"), f"{p}.overlap.train_eval_records")
            near = NearDuplicateOverlap.parse(ov.get("near_duplicate", _MISSING), f"{p}.overlap.near_duplicate")
        env = v.get("environment", _MISSING)
        exports = {
            k: ExportRef.parse(x, f"{p}.{k}")
            for k, x in v.items()
            if k not in RESERVED_NAMES and isinstance(x, Mapping) and EXPORT_KIND.match(k)
        }
        return cls(
            run_id=_str(v.get("run_id", _MISSING), f"{p}.run_id"),
            ledger=LedgerRef.parse(v.get("ledger", _MISSING), f"{p}.ledger"),
            framework=_opt_str(v.get("framework", _MISSING), f"{p}.framework"),
            base_model=ModelInput.parse(v.get("base_model", _MISSING), f"{p}.base_model"),
            tokenizer=ModelInput.parse(v.get("tokenizer", _MISSING), f"{p}.tokenizer"),
            datasets=tuple(
                DatasetRecord.parse(d, f"{p}.datasets[{i}]")
                for i, d in enumerate(_list(v.get("datasets", []), f"{p}.datasets"))
            ),
            config=ConfigRecord.parse(v.get("config", _MISSING), f"{p}.config"),
            training_arguments=TrainingArgumentsRecord.parse(
                v.get("training_arguments", _MISSING), f"{p}.training_arguments"
            ),
            environment={} if env is _MISSING or env is None else dict(_obj(env, f"{p}.environment")),
            metrics=Metrics.parse(v.get("metrics", _MISSING), f"{p}.metrics"),
            overlap=n,
            near_duplicate=near,
            warnings=tuple(
                _str(w, f"{p}.warnings[{i}]") for i, w in enumerate(_list(v.get("warnings", []), f"{p}.warnings"))
            ),
            strict=strict,
            started_at=_opt_str(v.get("started_at", _MISSING), f"{p}.started_at"),
            finished_at=_opt_str(v.get("finished_at", _MISSING), f"{p}.finished_at"),
            bastion_version=_opt_str(v.get("bastion_version", _MISSING), f"{p}.bastion_version"),
            checkpoint=CheckpointRef.parse(v.get("checkpoint", _MISSING), f"{p}.checkpoint"),
            previous_run=PreviousRun.parse(v.get("previous_run", _MISSING), f"{p}.previous_run"),
            exports=exports,
        )

    def to_json(self) -> dict[str, Any]:
        """The v1 JSON form (what ``statement.json`` carries)."""
        out: dict[str, Any] = {
            "run_id": self.run_id,
            "framework": self.framework,
            "base_model": None if self.base_model is None else self.base_model.to_json(),
            "tokenizer": None if self.tokenizer is None else self.tokenizer.to_json(),
            "datasets": [d.to_json() for d in self.datasets],
            "config": None if self.config is None else self.config.to_json(),
            "training_arguments": None if self.training_arguments is None else self.training_arguments.to_json(),
            "environment": dict(self.environment),
            "metrics": self.metrics.to_json(),
            "ledger": self.ledger.to_json(),
            "overlap": self.overlap_json(),
            "warnings": list(self.warnings),
            "strict": self.strict,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "bastion_version": self.bastion_version,
        }
        if self.checkpoint is not None:
            out["checkpoint"] = self.checkpoint.to_json()
        if self.previous_run is not None:
            out["previous_run"] = self.previous_run.to_json()
        for kind, ref in self.exports.items():
            out[kind] = ref.to_json()
        return out

    def overlap_json(self) -> dict[str, Any]:
        """``overlap``: the exact count, plus ``near_duplicate`` only when it was computed (older records lack it)."""
        out: dict[str, Any] = {"train_eval_records": self.overlap}
        if self.near_duplicate is not None:
            out["near_duplicate"] = self.near_duplicate.to_json()
        return out

    def datasets_with_role(self, role: str) -> tuple[DatasetRecord, ...]:
        return tuple(d for d in self.datasets if d.role == role)


__all__ = [
    "ACCEPTED_PREDICATE_TYPES",
    "EXPORT_KIND",
    "LEGACY_PREDICATE_TYPES",
    "PREDICATE_TYPE",
    "RESERVED_NAMES",
    "ROLES",
    "CheckpointRef",
    "ConfigRecord",
    "DatasetRecord",
    "ExportRef",
    "FileRef",
    "LedgerRef",
    "Metrics",
    "ModelInput",
    "NearDuplicateOverlap",
    "PredicateError",
    "PreviousRun",
    "RunPredicate",
    "TrainingArgumentsRecord",
]
