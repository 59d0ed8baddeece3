"""Near-duplicate train/eval overlap: MinHash/LSH over normalised record text (``datasketch``).

The exact overlap (:func:`bastion.provenance.inputs.train_eval_overlap`) compares canonical-JSON
digests, so an eval record that differs from a training record by case, spacing or punctuation is
not counted. This module counts the eval records that have a near-duplicate among the training
records:

1. **Text** of a record: its string values (all keys, in canonical key order; a chat message's
   ``role`` is left out, it would make every chat record look alike), joined by spaces.
2. **Normalised**: Unicode NFKC, case-folded, punctuation and symbols turned into spaces, runs of
   whitespace collapsed. ``"Hello,  WORLD!"`` and ``"hello world"`` are the same text.
3. **Shingles**: the set of ``shingle_words``-word sequences (default 3); a text shorter than that is
   one shingle. An empty text has none and is never a near-duplicate.
4. **MinHash** (``num_perm`` permutations, datasketch's ``affine32`` scheme, seed 1: the same
   records always give the same result) estimates the Jaccard similarity of two shingle sets. A
   shingle's hash combines cached 64-bit BLAKE2b hashes of its words; the signatures are exactly
   datasketch's ``MinHash.update_batch`` of those hashes, computed for many records per numpy batch
   (:class:`Sketcher`). The eval records go into a :class:`datasketch.MinHashLSH` index at
   ``threshold``; the training records stream past it, so memory is bounded by the eval set. Every
   LSH candidate is confirmed by the MinHash similarity estimate (``>= threshold``).

The count includes exact duplicates (their similarity is 1). Configuration (a trainer's
``near_duplicates:`` mapping; see :class:`NearDupConfig`)::

    near_duplicates:
      threshold: 0.8      # estimated Jaccard similarity of word shingles, in (0, 1]
      num_perm: 128       # MinHash permutations (more: more precise, slower)
      shingle_words: 3    # words per shingle
"""

from __future__ import annotations

import functools
import hashlib
import json
import sys
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.errors import ConfigError, InputError

if TYPE_CHECKING:
    from bastion.provenance.datasets import DatasetDigest

METHOD = "minhash-lsh"
NORMALISATION = "nfkc-casefold-punctuation-whitespace"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(default=0.8, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16, le=1024)
    shingle_words: int = Field(default=3, ge=1, le=16)


@dataclass(frozen=True)
class NearDupConfig:
    """How near-duplicates are found; build with :meth:`from_mapping` (errors name the key)."""

    threshold: float = 0.8
    num_perm: int = 128
    shingle_words: int = 3

    @classmethod
    def from_mapping(cls, value: Any, *, source: str = "near_duplicates") -> NearDupConfig:
        if isinstance(value, NearDupConfig):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{source}: expected a mapping such as {{threshold: 0.8}}, got {type(value).__name__}",
                hint="near_duplicates: {threshold: 0.8, num_perm: 128, shingle_words: 3}",
            )
        try:
            m = _Model.model_validate(dict(value))
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"]) or "(top level)"
                msg = err["msg"]
                if err["type"] == "extra_forbidden":
                    msg = "unknown key (allowed: " + ", ".join(_Model.model_fields) + ")"
                lines.append(f"{source}.{key}: {msg}")
            raise ConfigError("\n".join(lines)) from None
        return cls(threshold=m.threshold, num_perm=m.num_perm, shingle_words=m.shingle_words)


@dataclass(frozen=True)
class NearDupResult:
    """The outcome, as the predicate records it (``overlap.near_duplicate``)."""

    threshold: float
    num_perm: int
    shingle_words: int
    eval_records: int
    """Eval records with at least one near-duplicate among the training records (exact ones included)."""
    eval_total: int
    train_total: int

    @property
    def share(self) -> float:
        return self.eval_records / self.eval_total if self.eval_total else 0.0


@functools.cache
def _fold_table() -> dict[int, str]:
    """Every punctuation, symbol, separator, control and format character -> a space (built once, ~1 s)."""
    return {
        c: " "
        for c in range(sys.maxunicode + 1)
        if (cat := unicodedata.category(chr(c)))[0] in "PSZ" or cat in ("Cc", "Cf")
    }


def normalise(text: str) -> str:
    """NFKC, case-folded, punctuation and symbols as spaces, whitespace collapsed and trimmed."""
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_fold_table())
    return " ".join(folded.split())


def record_text(record: Any) -> str:
    """The record's string values in canonical key order, joined by spaces (see the module docs)."""
    parts: list[str] = []

    def walk(value: Any, key: str | None) -> None:
        if isinstance(value, str):
            if key != "role":
                parts.append(value)
        elif isinstance(value, Mapping):
            for k in sorted(value, key=str):
                walk(value[k], str(k))
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item, key)

    walk(record, None)
    return " ".join(parts)


def shingles(text: str, words: int) -> set[bytes]:
    """The word ``words``-grams of normalised ``text`` (one shingle when it is shorter); UTF-8 bytes."""
    tokens = normalise(text).split()
    if not tokens:
        return set()
    if len(tokens) <= words:
        return {" ".join(tokens).encode("utf-8")}
    return {" ".join(tokens[i : i + words]).encode("utf-8") for i in range(len(tokens) - words + 1)}


SEED = 1
"""datasketch's default MinHash seed: the permutations, hence the result, are the same on every run."""
CHUNK_SHINGLES = 1 << 16
"""Shingles sketched per numpy batch (the permuted matrix is CHUNK_SHINGLES x num_perm x 4 bytes)."""
_WORD_CACHE_LIMIT = 1 << 21
_MIX = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, odd: combines word hashes into a shingle hash
_MASK64 = (1 << 64) - 1


def _fmix32(h: Any) -> Any:
    """MurmurHash3's 32-bit finalizer, as datasketch's ``affine32`` scheme applies it to every input hash."""
    import numpy as np

    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


class _QuerySketch:
    """The MinHash of one training record, as :meth:`datasketch.MinHashLSH.query` reads one (hash values,
    scheme, seed, length): building a full ``LeanMinHash`` per training record would cost more than the
    sketch itself."""

    __slots__ = ("hashvalues", "scheme", "seed")

    def __init__(self, hashvalues: Any) -> None:
        self.hashvalues = hashvalues
        self.scheme = "affine32"
        self.seed = SEED

    def __len__(self) -> int:
        return len(self.hashvalues)


class Sketcher:
    """MinHash signatures of records, computed for many records at once.

    A signature is exactly what ``datasketch.MinHash(num_perm, seed=1, hashfunc=int).update_batch(h)``
    gives for the record's shingle hashes ``h`` (the affine32 scheme: MurmurHash3 finalizer, then
    ``a*h + b mod 2**32`` with datasketch's own permutations; tests check the equality). Shingle hashes
    come from cached 64-bit BLAKE2b hashes of the words, combined per shingle in numpy, so no Python
    code runs per shingle, and the permutations run on whole batches of records.
    """

    def __init__(self, config: NearDupConfig) -> None:
        from datasketch import MinHash

        self.config = config
        a, b = MinHash(num_perm=config.num_perm, seed=SEED, hashfunc=int).permutations
        self._a = a.astype("uint32")
        self._b = b.astype("uint32")
        self._words: dict[str, int] = {}

    def _word(self, word: str) -> int:
        h = self._words.get(word)
        if h is None:
            if len(self._words) >= _WORD_CACHE_LIMIT:
                self._words.clear()
            h = self._words[word] = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        return h

    def shingle_hashes(self, record: Any) -> Any:
        """uint32 hashes of the record's shingles (see :func:`shingles`; repeats possible); ``None`` if none."""
        import numpy as np

        tokens = normalise(record_text(record)).split()
        if not tokens:
            return None
        get = self._words.get
        words = np.array([get(t) or self._word(t) for t in tokens], dtype=np.uint64)
        n = min(self.config.shingle_words, len(words))
        width = len(words) - n + 1
        acc = words[:width].copy()
        mix = np.uint64(_MIX)
        for k in range(1, n):
            acc = acc * mix + words[k : k + width]
        return ((acc >> np.uint64(32)) ^ (acc & np.uint64(0xFFFFFFFF))).astype(np.uint32)

    def signatures(self, records: Iterable[Any]) -> Iterator[Any]:
        """One uint32 signature array (length ``num_perm``) per record, ``None`` for a record without text."""
        pending: list[Any] = []
        size = 0
        for record in records:
            h = self.shingle_hashes(record)
            pending.append(h)
            size += 0 if h is None else len(h)
            if size >= CHUNK_SHINGLES:
                yield from self._sketch(pending)
                pending, size = [], 0
        if pending:
            yield from self._sketch(pending)

    def _sketch(self, batch: list[Any]) -> Iterator[Any]:
        import numpy as np

        present = [h for h in batch if h is not None]
        if present:
            hv = _fmix32(np.concatenate(present))
            # num_perm x shingles, uint32 (wraps mod 2**32); each record's minimum over its own columns.
            permuted = self._a[:, None] * hv[None, :] + self._b[:, None]
            starts = np.cumsum([0] + [len(h) for h in present[:-1]])
            mins = np.ascontiguousarray(np.minimum.reduceat(permuted, starts, axis=1).T)
        row = 0
        for h in batch:
            if h is None:
                yield None
            else:
                yield mins[row]
                row += 1


def near_duplicate_overlap(
    train: Iterable[Any], evals: Iterable[Any], config: NearDupConfig | None = None
) -> NearDupResult:
    """Count the ``evals`` records that have a near-duplicate among the ``train`` records.

    Both are iterables of records (parsed JSON values); ``train`` is streamed once.
    """
    from datasketch import LeanMinHash, MinHashLSH

    cfg = config or NearDupConfig()
    sketcher = Sketcher(cfg)
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm)
    eval_hashes: dict[int, Any] = {}
    eval_total = 0
    for i, sig in enumerate(sketcher.signatures(evals)):
        eval_total += 1
        if sig is None:
            continue
        m = LeanMinHash(seed=SEED, hashvalues=sig, scheme="affine32")
        eval_hashes[i] = m
        lsh.insert(i, m, check_duplication=False)
    found: set[int] = set()
    train_total = 0
    need = cfg.threshold * cfg.num_perm
    for sig in sketcher.signatures(train):
        train_total += 1
        if sig is None or len(found) == len(eval_hashes):
            continue
        for key in lsh.query(_QuerySketch(sig)):
            # The MinHash similarity estimate (datasketch's jaccard()): the share of equal hash values.
            if key not in found and int((sig == eval_hashes[key].hashvalues).sum()) >= need:
                found.add(key)
    return NearDupResult(
        threshold=cfg.threshold,
        num_perm=cfg.num_perm,
        shingle_words=cfg.shingle_words,
        eval_records=len(found),
        eval_total=eval_total,
        train_total=train_total,
    )


# ---------------------------------------------------------------------------- records of recorded datasets


def iter_file_records(path: Path, fmt: str) -> Iterator[Any]:
    """Records of a JSONL/JSON dataset file in file order (blank JSONL lines skipped, as when hashing)."""
    if fmt == "jsonl":
        with open(path, "rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                if raw.strip():
                    try:
                        yield json.loads(raw)
                    except ValueError:
                        raise InputError(
                            "not valid JSON (changed since it was hashed?)", path=path, line=lineno
                        ) from None
        return
    if fmt == "json":
        try:
            data = json.loads(path.read_bytes())
        except ValueError:
            raise InputError("not valid JSON (changed since it was hashed?)", path=path) from None
        if not isinstance(data, list):
            raise InputError("JSON dataset must be an array of records", path=path)
        yield from data
        return
    raise InputError(f"{fmt} datasets have no records to compare", path=path)


def _parent_records(path: Path, fmt: str) -> Iterator[Any]:
    if fmt == "arrow-rows":
        from datasets import load_from_disk

        from bastion.provenance.recorder import jsonable

        rows: Sequence[Any] = load_from_disk(str(path))  # type: ignore[assignment]
        return (jsonable(row) for row in rows)
    return iter_file_records(path, fmt)


def dataset_records(path: str, fmt: str, records: int | None, split: Mapping[str, Any] | None) -> Iterator[Any]:
    """The records one recorded dataset holds: a whole file, or one carved side of its parent.

    Raises :class:`InputError` when the data no longer has the recorded number of records.
    """
    from bastion.provenance.inputs import Carve

    p = Path(path)
    if split is None:
        yield from _counted(iter_file_records(p, fmt), records, p)
        return
    parent = split.get("parent") or {}
    n = int(parent.get("records") or 0)
    if split.get("method") == "indices":
        carve = Carve(eval_indices=tuple(split.get("eval_indices") or ()))
    else:
        carve = Carve(
            test_size=split.get("test_size"), seed=split.get("seed"), shuffle=bool(split.get("shuffle", True))
        )
    train_idx, eval_idx = carve.indices(n, p)
    chosen = set(eval_idx if split.get("side") == "eval" else train_idx)
    rows = _counted(_parent_records(p, fmt), n, p)
    yield from (row for i, row in enumerate(rows) if i in chosen)


def datasets_near_duplicates(datasets: Sequence[DatasetDigest], config: NearDupConfig) -> NearDupResult | None:
    """Near-duplicates between the recorded train and eval datasets of a run.

    ``None`` when it cannot be computed, exactly when the exact overlap cannot: no train or no eval
    data, or a data file without per-record digests (Parquet, Arrow shards).
    """
    from bastion.provenance.inputs import METADATA

    train = [d for d in datasets if d.role == "train" and d.format != METADATA]
    evals = [d for d in datasets if d.role == "eval" and d.format != METADATA]
    if not (train and evals and all(d.records is not None for d in train + evals)):
        return None

    def rows(group: list[DatasetDigest]) -> Iterator[Any]:
        for d in group:
            yield from dataset_records(d.path, d.format, d.records, d.split)

    return near_duplicate_overlap(rows(train), rows(evals), config)


def _counted(rows: Iterator[Any], expected: int | None, path: Path) -> Iterator[Any]:
    n = 0
    for row in rows:
        n += 1
        yield row
    if expected is not None and n != expected:
        raise InputError(
            f"holds {n} records now but {expected} when it was hashed; the near-duplicate check needs the same data",
            path=path,
            hint="do not change dataset files while a run is recording",
        )


__all__ = [
    "METHOD",
    "NORMALISATION",
    "NearDupConfig",
    "NearDupResult",
    "Sketcher",
    "dataset_records",
    "datasets_near_duplicates",
    "iter_file_records",
    "near_duplicate_overlap",
    "normalise",
    "record_text",
    "shingles",
]
