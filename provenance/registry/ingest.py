"""``bastion registry add``: find run records, verify them, and index what their signed predicates say.

Each record is verified with :func:`bastion.provenance.verify.verify` (signature, statement, subjects,
model signature, ledger) before it is indexed. A record that fails is refused, or indexed with
``verified = false`` and its failed checks when the caller asks for that (``flag_unverified``).

Per-record digests are not part of a run record (the signed Merkle root binds them); the registry
gets them from the data files themselves (:func:`index_data_files`, ``--data``), checked against the
signed root, or from the recorder at finalize (:func:`register_finalized`).
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bastion.errors import BastionError, InputError
from bastion.provenance.datasets import DatasetDigest, hash_dataset
from bastion.provenance.inputs import Carve, carved_side
from bastion.provenance.ledger import read_entries
from bastion.provenance.predicate import DatasetRecord, PredicateError, RunPredicate
from bastion.provenance.registry.pinned import pin_material
from bastion.provenance.registry.store import ArtifactEntry, DatasetUse, Link, Registry, RegistryError
from bastion.provenance.statement import RECORD_DIR

logger = logging.getLogger("bastion")

STATEMENT = f"{RECORD_DIR}/statement.json"
_SKIP_DIRS = {".git", "__pycache__", "node_modules"}


@dataclass(frozen=True)
class Trust:
    """What the records are verified against (the arguments of ``bastion verify``)."""

    public_key: tuple[Path, ...] = ()
    certificate_chain: tuple[Path, ...] = ()
    identity: str | None = None
    issuer: str | None = None
    trust_config: Path | None = None
    require_model_signature: bool = True
    tsa_certificate_chain: tuple[Path, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.public_key or self.certificate_chain or self.identity)


@dataclass
class AddResult:
    """What happened to one run record (or to one path that held none)."""

    path: str
    status: str
    """``added``, ``updated``, ``unchanged``, ``flagged`` (indexed, verification failed), ``refused``."""
    run_id: str | None = None
    artifact_digest: str | None = None
    kind: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("added", "updated", "unchanged")

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "run_id": self.run_id,
            "artifact_digest": self.artifact_digest,
            "kind": self.kind,
            "problems": list(self.problems),
        }


# ---------------------------------------------------------------------------- finding records


def expand(paths: Iterable[str]) -> Iterator[tuple[str, list[Path]]]:
    """``(argument, record directories)`` for each argument: a directory (searched), or a glob pattern."""
    for arg in paths:
        matches = [Path(m) for m in sorted(glob.glob(arg))] if glob.has_magic(arg) else [Path(arg)]
        found: list[Path] = []
        for m in matches:
            found.extend(find_records(m))
        yield arg, found


def find_records(root: Path) -> list[Path]:
    """Directories under ``root`` (``root`` included) that hold ``bastion/statement.json``, sorted.

    Earlier runs' records kept under ``bastion/previous/`` are not separate artifacts and are skipped.
    The record folder itself (``out/bastion``) or its statement stand for the output directory.
    """
    if root.is_file() and root.name == "statement.json" and root.parent.name == RECORD_DIR:
        root = root.parent.parent
    elif root.is_dir() and root.name == RECORD_DIR and (root / "statement.json").is_file():
        root = root.parent
    if not root.is_dir():
        return []
    out: list[Path] = []
    stack = [root]
    while stack:
        d = stack.pop()
        if (d / STATEMENT).is_file():
            out.append(d)
        try:
            children = sorted((c for c in d.iterdir() if c.is_dir() and not c.is_symlink()), reverse=True)
        except OSError:
            continue
        stack.extend(c for c in children if c.name not in _SKIP_DIRS and c.name != RECORD_DIR)
    return sorted(out)


# ---------------------------------------------------------------------------- one record


def manifest_digest(subjects: Iterable[tuple[str, str]]) -> str:
    """The directory manifest digest of (name, sha256) pairs: what ``hash_directory(...).sha256`` gives."""
    text = "".join(f"{sha}  {name}\n" for name, sha in sorted(subjects))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _kind(pred: RunPredicate, subjects: Sequence[tuple[str, str]]) -> str:
    """``checkpoint``, an export kind (``merge``, ``export``, ...) for the exported directory's own record, or ``run``.

    A training run extended after training (``axolotl merge-lora``) names the export in its predicate too,
    but holds the exported folder among its files: that record is the run's.
    """
    if pred.checkpoint is not None:
        return "checkpoint"
    for kind in sorted(pred.exports, key=lambda k: (k != "merge", k)):
        inside = f"{pred.exports[kind].path.rstrip('/')}/"
        if not any(name.startswith(inside) for name, _ in subjects):
            return kind
    return "run"


def _sha_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        digest = value.get("digest")
        if isinstance(digest, Mapping) and isinstance(digest.get("sha256"), str):
            return str(digest["sha256"])
    return None


def _links(pred: RunPredicate, kind: str) -> list[Link]:
    links: list[Link] = []
    if pred.base_model is not None and pred.base_model.sha256:
        links.append(Link("base_model", pred.base_model.sha256, "artifact", pred.base_model.path_name))
    if pred.tokenizer is not None and pred.tokenizer.sha256:
        links.append(Link("tokenizer", pred.tokenizer.sha256, "artifact", pred.tokenizer.path_name))
    merge = pred.exports.get("merge")
    if merge is not None:
        base = merge.details.get("base_model")
        sha = _sha_of(base)
        if sha and isinstance(base, Mapping):
            links.append(Link("merge.base_model", sha, "artifact", str(base.get("path_name") or "")))
        adapter = merge.details.get("adapter")
        if isinstance(adapter, Mapping):
            for f in adapter.get("files") or []:
                fsha = _sha_of(f)
                if fsha:
                    links.append(Link("merge.adapter", fsha, "file", str(f.get("name") or "")))
    if kind != "run":
        links.append(Link("record_of", pred.run_id, "run", None))
    if pred.previous_run is not None and pred.previous_run.run_id:
        links.append(Link("previous_run", pred.previous_run.run_id, "run", pred.previous_run.status))
    return links


def _uses(pred: RunPredicate) -> list[DatasetUse]:
    out = []
    for d in pred.datasets:
        parent = (d.split or {}).get("parent")
        out.append(
            DatasetUse(
                name=d.name,
                role=d.role,
                sha256=d.sha256,
                records=d.records,
                merkle_root=d.merkle_root,
                size=d.size,
                format=d.format,
                parent_sha256=_sha_of(parent) if isinstance(parent, Mapping) else None,
            )
        )
    return out


def _chain(root: Path, pred: RunPredicate, run_id: str) -> tuple[list[Link], list[DatasetUse]]:
    """Runs this one continues (resumed from a checkpoint in the same ledger) and the data those segments read.

    Read from the ledger up to the head the statement vouches for (verified before this is called).
    """
    links: list[Link] = []
    uses: list[DatasetUse] = []
    path = root / pred.ledger.path
    entries: list[dict[str, Any]] = []
    try:
        for _, entry in read_entries(path):
            entries.append(entry)
            if pred.ledger.entries is not None and len(entries) >= pred.ledger.entries:
                break
    except (BastionError, OSError):
        return links, uses
    segments: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for e in entries:
        raw = e.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if e.get("kind") == "run.start":
            segments.append((data, []))
        elif e.get("kind") == "inputs" and segments:
            segments[-1][1].extend(d for d in data.get("datasets") or [] if isinstance(d, dict))
    own = [i for i, (start, _) in enumerate(segments) if start.get("run_id") == run_id]
    if not own:
        return links, uses
    first = own[0]
    # Walk back over the segments this run resumed: each resumed segment continues the one before it.
    i = first
    while i > 0 and int(segments[i][0].get("resumed_at_step") or 0) > 0:
        i -= 1
        earlier, datasets = segments[i]
        rid = earlier.get("run_id")
        if isinstance(rid, str) and rid != run_id:
            links.append(Link("resumed_from", rid, "run", None))
        for d in datasets:
            try:
                rec = DatasetRecord.parse(d, "ledger.inputs.datasets")
            except PredicateError:
                continue
            parent = (rec.split or {}).get("parent")
            uses.append(
                DatasetUse(
                    rec.name,
                    rec.role,
                    rec.sha256,
                    rec.records,
                    rec.merkle_root,
                    rec.size,
                    rec.format,
                    _sha_of(parent) if isinstance(parent, Mapping) else None,
                )
            )
    return links, uses


def build_entry(root: Path, statement: Mapping[str, Any], statement_bytes: bytes, report: Any) -> ArtifactEntry:
    """The registry row of one record; raises :class:`PredicateError` for a malformed predicate."""
    pred = RunPredicate.parse(statement.get("predicate"))
    subjects = [(str(s["name"]), str(s["digest"]["sha256"]).lower()) for s in statement.get("subject") or []]
    kind = _kind(pred, subjects)
    links = _links(pred, kind)
    uses = _uses(pred)
    more_links, more_uses = _chain(root, pred, pred.run_id)
    seen = {(u.sha256, u.role) for u in uses}
    for u in more_uses:
        if (u.sha256, u.role) not in seen:
            seen.add((u.sha256, u.role))
            uses.append(u)
    return ArtifactEntry(
        record_id=hashlib.sha256(statement_bytes).hexdigest(),
        artifact_digest=manifest_digest(subjects),
        run_id=pred.run_id,
        kind=kind,
        framework=pred.framework,
        base_model=None if pred.base_model is None else pred.base_model.sha256,
        base_model_name=None if pred.base_model is None else pred.base_model.path_name,
        tokenizer=None if pred.tokenizer is None else pred.tokenizer.sha256,
        signer=report.signer,
        verified=report.ok,
        failures=tuple(report.lines()),
        started_at=pred.started_at,
        finished_at=pred.finished_at,
        ledger_head=pred.ledger.head,
        ledger_entries=pred.ledger.entries,
        path=str(root.absolute()),
        predicate=pred.to_json(),
        files=tuple(subjects),
        links=tuple(links + more_links),
        uses=tuple(uses),
    )


def add_record(registry: Registry, root: Path, trust: Trust, *, flag_unverified: bool = False) -> AddResult:
    """Verify the record in ``root`` and index it (see the module docstring)."""
    from bastion.provenance.verify import verify

    shown = str(root)
    try:
        report = verify(
            root,
            public_key=list(trust.public_key) or None,
            certificate_chain=list(trust.certificate_chain) or None,
            identity=trust.identity,
            issuer=trust.issuer,
            trust_config=trust.trust_config,
            require_model_signature=trust.require_model_signature,
            tsa_certificate_chain=list(trust.tsa_certificate_chain) or None,
        )
    except BastionError as exc:  # unusable trust arguments: the same for every record
        raise RegistryError(f"cannot verify {shown}: {exc.message}", hint=exc.hint) from None
    problems = report.lines()
    if not report.ok and not flag_unverified:
        return AddResult(shown, "refused", problems=problems)
    if report.statement is None:
        return AddResult(shown, "refused", problems=problems or ["the statement could not be read"])
    try:
        statement_bytes = (root / STATEMENT).read_bytes()
        entry = build_entry(root, report.statement, statement_bytes, report)
        if report.ok:
            entry = replace(entry, trust=pin_material(report, require_model_signature=trust.require_model_signature))
    except (PredicateError, InputError) as exc:
        return AddResult(shown, "refused", problems=[*problems, exc.message])
    except (OSError, KeyError, TypeError) as exc:
        return AddResult(shown, "refused", problems=[*problems, f"the statement cannot be indexed: {exc}"])
    status = registry.put_artifact(entry)
    if not report.ok:
        status = "flagged"
    return AddResult(shown, status, entry.run_id, entry.artifact_digest, entry.kind, problems)


def add_paths(
    registry: Registry, paths: Sequence[str], trust: Trust, *, flag_unverified: bool = False
) -> list[AddResult]:
    """:func:`add_record` for every record under ``paths``; a path that holds none is refused, saying so."""
    results: list[AddResult] = []
    seen: set[Path] = set()
    for arg, roots in expand(paths):
        if not roots:
            what = "matches nothing" if glob.has_magic(arg) else "does not exist" if not Path(arg).exists() else ""
            results.append(
                AddResult(
                    arg,
                    "refused",
                    problems=[
                        f"{arg} {what}".strip()
                        if what
                        else f"no run record under {arg} (no {STATEMENT} in it or below it)"
                    ],
                )
            )
            continue
        for root in roots:
            key = root.resolve()
            if key in seen:
                continue
            seen.add(key)
            results.append(add_record(registry, root, trust, flag_unverified=flag_unverified))
    return results


# ---------------------------------------------------------------------------- record digests


@dataclass
class DataResult:
    path: str
    status: str
    """``indexed``, ``already indexed``, ``unused`` (no indexed run names its digest), ``skipped`` (no
    records: not JSON/JSONL), ``refused``."""
    sha256: str | None = None
    records: int | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "status": self.status,
            "sha256": self.sha256,
            "records": self.records,
            "problems": self.problems,
        }


def _data_files(paths: Iterable[str]) -> Iterator[tuple[str, Path | None]]:
    for arg in paths:
        matches = [Path(m) for m in sorted(glob.glob(arg))] if glob.has_magic(arg) else [Path(arg)]
        if not matches or not matches[0].exists():
            yield arg, None
            continue
        for m in matches:
            if m.is_dir():
                for f in sorted(m.rglob("*")):
                    if f.is_file() and RECORD_DIR not in f.relative_to(m).parts:
                        yield arg, f
            else:
                yield arg, m


def _signed_roots(registry: Registry, sha256: str) -> set[str]:
    return {r[0] for r in registry.rows("SELECT merkle_root FROM reg_uses WHERE sha256 = ?", (sha256,)) if r[0]}


def index_digest(registry: Registry, digest: DatasetDigest, source: str) -> DataResult:
    """Index the record digests of one hashed dataset (or carved side) if an indexed run names it."""
    if digest.records is None or digest.merkle_root is None:
        return DataResult(digest.path, "refused", digest.sha256, None, [f"{digest.format} files have no records"])
    roots = _signed_roots(registry, digest.sha256)
    if not roots:
        return DataResult(digest.path, "unused", digest.sha256, digest.records)
    if digest.merkle_root not in roots:
        return DataResult(
            digest.path,
            "refused",
            digest.sha256,
            digest.records,
            [f"its Merkle root {digest.merkle_root[:16]}… is not the one the run records sign"],
        )
    added = registry.put_records(
        digest.sha256, digest.merkle_root, (bytes.fromhex(d) for d in digest.record_digests), source=source
    )
    return DataResult(digest.path, "indexed" if added else "already indexed", digest.sha256, digest.records)


def _carved_sides(registry: Registry, parent: DatasetDigest) -> list[DatasetDigest]:
    """The carved train/eval sides that indexed runs recorded with ``parent`` as their parent."""
    sides: list[DatasetDigest] = []
    rows = registry.rows(
        "SELECT DISTINCT a.predicate, u.position FROM reg_uses u JOIN reg_artifacts a ON a.record_id = u.record_id "
        "WHERE u.parent_sha256 = ?",
        (parent.sha256,),
    )
    done: set[str] = set()
    for predicate_json, position in rows:
        entry = (json.loads(predicate_json).get("datasets") or [])[int(position)]
        split = entry.get("split") or {}
        sha = _sha_of(entry)
        if not sha or sha in done:
            continue
        try:
            if split.get("method") == "indices":
                carve = Carve(eval_indices=tuple(split.get("eval_indices") or ()))
            else:
                carve = Carve(
                    test_size=split.get("test_size"), seed=split.get("seed"), shuffle=bool(split.get("shuffle"))
                )
            side = carved_side(parent, carve, str(split.get("side")))
        except BastionError:
            continue
        if side.sha256 == sha:
            done.add(sha)
            sides.append(side)
    return sides


def index_data_files(registry: Registry, paths: Sequence[str]) -> list[DataResult]:
    """Hash data files (JSON/JSONL; directories and globs expanded) and index the record digests of those
    the indexed runs used (whole files, and carved splits of them)."""
    results: list[DataResult] = []
    for arg, f in _data_files(paths):
        if f is None:
            results.append(DataResult(arg, "refused", problems=[f"{arg} does not exist or matches nothing"]))
            continue
        try:
            digest = hash_dataset(f)
        except InputError as exc:
            results.append(DataResult(str(f), "refused", problems=[str(exc)]))
            continue
        if digest.records is None:  # a Parquet shard, a README: no record digests to index
            problem = f"{digest.format} files have no per-record digests (only JSON and JSONL do)"
            results.append(DataResult(str(f), "skipped", digest.sha256, None, [problem]))
            continue
        result = index_digest(registry, digest, source=f"file {f.name}")
        sides = [
            index_digest(registry, side, source=f"carved from {f.name}") for side in _carved_sides(registry, digest)
        ]
        if result.status != "unused" or not sides:
            results.append(result)
        results.extend(sides)
    return results


# ---------------------------------------------------------------------------- at finalize


def register_finalized(
    location: str, output_dir: Path, datasets: Sequence[DatasetDigest], trust: Trust | None = None
) -> AddResult:
    """Index a just-finalized run and the record digests the recorder computed (the finalize hook).

    Without trust material the record is indexed flagged (``registered at finalize, not verified
    against a trust root``); ``bastion registry add`` with trust arguments verifies it later.
    """
    from bastion.provenance.registry.store import open_registry

    with open_registry(location) as registry:
        t = trust or Trust()
        result = add_record(registry, output_dir, t, flag_unverified=True)
        if t.empty and result.status != "refused":
            result.problems.append("registered at finalize without trust material: not verified against a trust root")
        if result.status == "refused":
            return result
        for d in datasets:
            if d.records is not None and d.merkle_root is not None:
                try:
                    index_digest(registry, d, source="finalize")
                except RegistryError as exc:
                    result.problems.append(exc.message)
        return result


__all__ = [
    "AddResult",
    "DataResult",
    "Trust",
    "add_paths",
    "add_record",
    "build_entry",
    "expand",
    "find_records",
    "index_data_files",
    "index_digest",
    "manifest_digest",
    "register_finalized",
]
