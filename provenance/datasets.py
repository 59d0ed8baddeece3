"""Dataset digests: the whole file plus one digest per record, folded into a Merkle root.

A record's digest is the SHA-256 of its RFC 8785 canonical JSON, so it does not depend on key order,
spacing or escaping in the file. The Merkle root over record digests lets an auditor later prove that
one given record was (or was not) in the training data without shipping the whole dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.errors import InputError
from bastion.provenance.canonical import canonical_json
from bastion.provenance.hashing import BLOCK_SIZE, sha256_file
from bastion.provenance.merkle import InclusionProof, MerkleTree, leaf_hash

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonlines")
JSON_SUFFIXES = (".json",)

ProgressCallback = Callable[[int], None]


def record_digest(record: Any) -> str:
    """Hex SHA-256 of a record's canonical JSON."""
    return hashlib.sha256(canonical_json(record)).hexdigest()


@dataclass
class DatasetDigest:
    """Digests of one dataset file."""

    name: str
    path: str
    role: str
    size: int
    sha256: str
    format: str
    records: int | None = None
    merkle_root: str | None = None
    record_digests: list[str] = field(default_factory=list, repr=False)
    split: dict[str, Any] | None = None
    """For one side of a split carved from another dataset: how (see ``bastion.provenance.inputs.Carve``)."""

    def as_dict(self) -> dict[str, Any]:
        """The statement/ledger form (record digests themselves are left out; the root binds them)."""
        out: dict[str, Any] = {
            "name": self.name,
            "role": self.role,
            "digest": {"sha256": self.sha256},
            "size": self.size,
            "format": self.format,
        }
        if self.records is not None:
            out["records"] = self.records
            out["merkle_root"] = self.merkle_root
        if self.split is not None:
            out["split"] = self.split
        return out

    def proof(self, index: int) -> InclusionProof:
        """Inclusion proof for record ``index`` (0-based, in file order)."""
        if self.records is None:
            raise InputError(f"{self.format} datasets have no per-record digests", path=self.path)
        tree = MerkleTree([leaf_hash(bytes.fromhex(d)) for d in self.record_digests])
        return InclusionProof(
            index=index,
            size=len(tree),
            leaf=leaf_hash(bytes.fromhex(self.record_digests[index])).hex(),
            path=tuple(tree.proof(index)),
            root=tree.root,
        )


def _iter_jsonl(path: Path, progress: ProgressCallback | None) -> Iterator[tuple[int, bytes]]:
    """(line number, raw line) for each line, reading in large blocks.

    Progress is reported in steps of about ``BLOCK_SIZE`` bytes (and once more at the end), not per
    line: a progress bar updated for each of a million short records would cost more than the hashing.
    """
    pending = 0
    with open(path, "rb", buffering=BLOCK_SIZE) as fh:
        for lineno, raw in enumerate(iter(fh.readline, b""), start=1):
            if progress is not None:
                pending += len(raw)
                if pending >= BLOCK_SIZE:
                    progress(pending)
                    pending = 0
            yield lineno, raw
    if progress is not None and pending:
        progress(pending)


# Records whose RFC 8785 form the C JSON encoder reproduces exactly are those without floats (RFC 8785
# writes ECMAScript's number form, not Python's repr), without integers of 16+ digits (beyond 2**53
# rfc8785 refuses them) and without characters outside the BMP (RFC 8785 sorts keys by UTF-16 code
# units, Python by code points). Floats and long integers are noticed while parsing; non-BMP
# characters by their UTF-8 lead bytes (0xF0-0xF4) or by \\u escapes of surrogates. These checks run
# at C speed (a regular expression over every line would cost more than the encoding it saves).
_UTF8_4BYTE_LEADS = (b"\xf0", b"\xf1", b"\xf2", b"\xf3", b"\xf4")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]")


def _has_non_bmp(raw: bytes) -> bool:
    if not raw.isascii() and any(lead in raw for lead in _UTF8_4BYTE_LEADS):
        return True
    return (b"\\ud" in raw or b"\\uD" in raw) and _SURROGATE_ESCAPE.search(raw) is not None


class _Canonicalizer:
    """Parses records and serializes them as RFC 8785 canonical JSON, quickly where that is exact.

    For records without floats, huge integers or non-BMP characters, RFC 8785 output is exactly
    ``json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"))``: same escapes (short
    forms and lowercase ``\\u00XX`` for control characters, everything else literal), same integer
    form, and code-point key order equals UTF-16 order within the BMP. Those records take the C
    encoder (about 8x faster than ``rfc8785``); every other record goes through ``rfc8785`` itself.
    The equivalence is property-tested against ``rfc8785`` in tests/provenance/test_datasets.py.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.inexact = False
        self.decoder = json.JSONDecoder(parse_float=self._float, parse_constant=self._float, parse_int=self._int)
        self.encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)

    def _float(self, text: str) -> float:
        self.inexact = True
        return float(text)

    def _int(self, text: str) -> int:
        if len(text) > 15:
            self.inexact = True
        return int(text)

    def decode(self, lineno: int, raw: bytes, *, whole_file: bool = False) -> tuple[Any, bool]:
        """(record, fast path allowed) for one JSONL line, or a whole JSON file starting at ``lineno``."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line_start = raw.rfind(b"\n", 0, exc.start) + 1
            raise InputError(
                f"line is not valid UTF-8 (byte {exc.start - line_start} of the line)",
                path=self.path,
                line=lineno + raw.count(b"\n", 0, exc.start),
                hint="re-encode the file as UTF-8",
            ) from None
        self.inexact = False
        try:
            if text.startswith("\ufeff"):
                raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
            record = self.decoder.decode(text)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"not valid JSON ({exc.msg} at column {exc.colno})",
                path=self.path,
                line=lineno + exc.lineno - 1,
                hint=(
                    "a .json dataset must be one JSON array of records"
                    if whole_file
                    else "each line of a JSONL dataset must be one complete JSON value"
                ),
            ) from None
        except RecursionError:
            raise InputError(
                "record is nested too deeply to parse", path=self.path, line=lineno, hint="flatten the record"
            ) from None
        return record, not self.inexact and not _has_non_bmp(raw)

    def canonical(self, record: Any, fast: bool, lineno: int | None, *, index: int | None = None) -> bytes:
        if fast:
            try:
                return self.encoder.encode(record).encode("utf-8")
            except (ValueError, UnicodeEncodeError, RecursionError):
                pass  # let rfc8785 decide, and word the error
        try:
            return canonical_json(record)
        except Exception as exc:  # rfc8785 raises its own error types for NaN, huge ints, bad keys
            where = f"record at index {index} " if index is not None else "record "
            raise InputError(
                f"{where}cannot be canonicalized as JSON ({exc})",
                path=self.path,
                line=lineno,
                hint="remove NaN/Infinity values and integers beyond 2**53",
            ) from None


def hash_dataset(
    path: str | os.PathLike[str],
    *,
    role: str = "train",
    name: str | None = None,
    progress: ProgressCallback | None = None,
) -> DatasetDigest:
    """Hash a dataset file.

    JSONL (``.jsonl``/``.ndjson``) and JSON arrays (``.json``) get per-record digests and a Merkle
    root; any other format (Parquet, Arrow, CSV) gets a whole-file digest only. Blank lines in JSONL
    are skipped. Errors name the file and the 1-based line.
    """
    p = Path(path)
    if not p.exists():
        raise InputError("dataset file not found", path=p, hint="check the dataset path in your config")
    if p.is_dir():
        raise InputError("dataset path is a directory; pass the data files inside it", path=p)
    if not p.is_file():
        raise InputError("dataset is not a regular file (a pipe, socket or device)", path=p)
    suffix = p.suffix.lower()
    size = p.stat().st_size
    display = name or p.name
    try:
        if suffix in JSONL_SUFFIXES:
            whole = hashlib.sha256()
            digests: list[str] = []
            canon = _Canonicalizer(p)
            sha256 = hashlib.sha256
            for lineno, raw in _iter_jsonl(p, progress):
                whole.update(raw)
                if not raw.strip():
                    continue
                record, fast = canon.decode(lineno, raw)
                digests.append(sha256(canon.canonical(record, fast, lineno)).hexdigest())
            return _with_tree(display, p, role, size, whole.hexdigest(), "jsonl", digests)
        if suffix in JSON_SUFFIXES:
            file_sha = sha256_file(p)
            canon = _Canonicalizer(p)
            data, fast = canon.decode(1, p.read_bytes(), whole_file=True)
            if progress is not None:
                progress(size)
            if not isinstance(data, list):
                raise InputError(
                    "JSON dataset must be an array of records",
                    path=p,
                    hint="use JSONL (one record per line) or a top-level JSON array",
                )
            digests = [hashlib.sha256(canon.canonical(r, fast, None, index=i)).hexdigest() for i, r in enumerate(data)]
            return _with_tree(display, p, role, size, file_sha, "json", digests)
    except PermissionError:
        raise InputError("permission denied while reading", path=p, hint="make the file readable") from None
    file_sha = sha256_file(p, progress=progress)
    return DatasetDigest(
        name=display, path=str(p), role=role, size=size, sha256=file_sha, format=suffix.lstrip(".") or "bin"
    )


def _with_tree(name: str, p: Path, role: str, size: int, sha: str, fmt: str, digests: list[str]) -> DatasetDigest:
    tree = MerkleTree([leaf_hash(bytes.fromhex(d)) for d in digests])
    return DatasetDigest(
        name=name,
        path=str(p),
        role=role,
        size=size,
        sha256=sha,
        format=fmt,
        records=len(digests),
        merkle_root=tree.root,
        record_digests=digests,
    )


def overlap(a: DatasetDigest, b: DatasetDigest) -> int:
    """Number of records of ``b`` whose canonical digest also occurs in ``a`` (train/eval leakage)."""
    seen = set(a.record_digests)
    return sum(1 for d in b.record_digests if d in seen)


__all__ = ["BLOCK_SIZE", "DatasetDigest", "hash_dataset", "overlap", "record_digest"]
