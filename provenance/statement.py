"""The in-toto Statement v1 that describes one training run.

Subjects are the output files with their digests. The predicate (type :data:`PREDICATE_TYPE`)
records what went in and how: base model, tokenizer, datasets with roles, resolved config,
environment, a metrics summary, the ledger head, the train/eval overlap and the run's times.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bastion.errors import InputError
from bastion.provenance.hashing import DirectoryDigest, FileDigest
from bastion.provenance.predicate import ACCEPTED_PREDICATE_TYPES, PREDICATE_TYPE, RunPredicate

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
RECORD_DIR = "bastion"
"""Name of the run-record folder inside an output directory."""
STATEMENT_NAME = "statement.json"
"""Name of the in-toto statement file inside the run-record folder."""
__all__ = [
    "ACCEPTED_PREDICATE_TYPES",
    "PREDICATE_TYPE",
    "RECORD_DIR",
    "STATEMENT_NAME",
    "STATEMENT_TYPE",
    "build_statement",
    "load_statement",
    "locate_record",
    "write_statement",
]


def build_statement(
    subjects: Iterable[FileDigest] | DirectoryDigest, predicate: dict[str, Any] | RunPredicate
) -> dict[str, Any]:
    """An in-toto Statement v1 over ``subjects`` (sorted by name) with our run predicate."""
    if isinstance(predicate, RunPredicate):
        predicate = predicate.to_json()
    files = subjects.files if isinstance(subjects, DirectoryDigest) else tuple(subjects)
    if not files:
        raise InputError(
            "no output files to describe: the output directory is empty",
            hint="call the statement step after the model/adapter has been saved",
        )
    return {
        "_type": STATEMENT_TYPE,
        "subject": [f.as_subject() for f in sorted(files, key=lambda f: f.name)],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def write_statement(statement: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write the statement as indented JSON atomically (temp file + rename)."""
    p = Path(path)
    try:
        # Serialize first: a statement JSON cannot represent (NaN, non-string keys, objects) must not
        # leave a half-written file behind. NaN/Infinity are refused: they are not JSON and no
        # verifier could canonicalize them.
        text = json.dumps(statement, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"statement cannot be written as JSON ({exc})",
            path=p,
            hint="metrics and config values must be finite numbers, strings, lists or mappings",
        ) from None
    tmp = p.with_name(p.name + ".tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise InputError(f"cannot write the statement: {exc.strerror or exc}", path=p) from None
    return p


def load_statement(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("statement not found", path=p, hint="is this a Bastion run directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"statement is not valid JSON ({exc})", path=p) from None
    except IsADirectoryError:
        raise InputError("statement path is a directory, expected statement.json", path=p) from None
    except OSError as exc:
        raise InputError(f"cannot read the statement: {exc.strerror or exc}", path=p) from None
    if not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE:
        raise InputError(f"not an in-toto Statement v1 (expected _type {STATEMENT_TYPE})", path=p)
    return data


def locate_record(path: Path) -> tuple[Path, Path]:
    """(run directory, statement path) for an output dir, its ``bastion/`` folder or the statement file."""
    if not path.exists():
        raise InputError("path not found", path=path, hint="pass a training output directory")
    if path.is_file():
        return (path.parent.parent if path.parent.name == RECORD_DIR else path.parent), path
    if (path / RECORD_DIR / STATEMENT_NAME).is_file():
        return path, path / RECORD_DIR / STATEMENT_NAME
    if (path / STATEMENT_NAME).is_file() and path.name == RECORD_DIR:
        return path.parent, path / STATEMENT_NAME
    if (path / RECORD_DIR).is_dir() or path.name == RECORD_DIR:
        raise InputError(
            f"the run record has no {STATEMENT_NAME}",
            path=path if path.name == RECORD_DIR else path / RECORD_DIR,
            hint="the run did not finish, or BastionCallback.finalize() was never called",
        )
    raise InputError(
        f"not a Bastion run directory (no {RECORD_DIR}/{STATEMENT_NAME})",
        path=path,
        hint="pass the training output directory that holds the bastion/ folder",
    )
