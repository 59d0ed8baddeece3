"""Lineage queries over the registry: by dataset, by model, by record (with inclusion proofs), dataset
diffs, and contamination through the lineage.

Every answer is a JSON-ready dict (``bastion lineage ... --json`` prints it as is). Records that were
indexed although they failed verification carry ``"verified": false`` wherever they appear.

The graph: an artifact's parents are the artifacts whose manifest digest its ``base_model`` /
``tokenizer`` / merge base names, the artifacts holding a file its merge adapter names, and, for a
merged model, an export or a checkpoint, the record of the training run it came from (same run id);
a resumed run's parents include the runs it continued in the same ledger.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.errors import InputError
from bastion.provenance.datasets import record_digest
from bastion.provenance.registry.proofs import CHUNK, DIGEST_SIZE, build_proof_from_tree, split_leaves
from bastion.provenance.registry.store import Registry, RegistryError, prefix_key

TRAINED_ROLES = ("train", "preference")
_ART_COLS = (
    "record_id, artifact_digest, run_id, kind, framework, base_model, base_model_name, verified, signer, path, "
    "started_at, finished_at, failures"
)


def _hex(value: str, what: str) -> str:
    v = value.strip().lower()
    if v.startswith("sha256:"):
        v = v[7:]
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise InputError(f"{what} must be a SHA-256 digest (64 hex digits), got {value[:80]!r}")
    return v


def _artifact(row: Any) -> dict[str, Any]:
    return {
        "record_id": row[0],
        "artifact_digest": row[1],
        "run_id": row[2],
        "kind": row[3],
        "framework": row[4],
        "base_model": row[5],
        "base_model_name": row[6],
        "verified": bool(row[7]),
        "signer": None if row[8] is None else json.loads(row[8]),
        "path": row[9],
        "started_at": row[10],
        "finished_at": row[11],
        "failures": json.loads(row[12]),
    }


def _artifacts(reg: Registry, where: str, params: Iterable[Any]) -> list[dict[str, Any]]:
    rows = reg.rows(
        f"SELECT {_ART_COLS} FROM reg_artifacts WHERE {where} ORDER BY started_at, record_id", tuple(params)
    )
    return [_artifact(r) for r in rows]


def list_artifacts(reg: Registry) -> list[dict[str, Any]]:
    """Every indexed record, oldest run first."""
    return _artifacts(reg, "1 = 1", ())


def _uses_of(reg: Registry, record_id: str) -> list[dict[str, Any]]:
    rows = reg.rows(
        "SELECT u.name, u.role, u.sha256, u.records, u.merkle_root, u.parent_sha256, d.sha256 FROM reg_uses u "
        "LEFT JOIN reg_datasets d ON d.sha256 = u.sha256 WHERE u.record_id = ? ORDER BY u.position",
        (record_id,),
    )
    return [
        {
            "name": r[0],
            "role": r[1],
            "sha256": r[2],
            "records": r[3],
            "merkle_root": r[4],
            "carved_from": r[5],
            "records_indexed": r[6] is not None,
        }
        for r in rows
    ]


# ---------------------------------------------------------------------------- the graph


def parents(reg: Registry, art: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(relation, target, parent artifact)`` for each indexed parent of ``art``."""
    out: list[tuple[str, str, dict[str, Any]]] = []
    for relation, target, kind in reg.rows(
        "SELECT relation, target, target_kind FROM reg_links WHERE record_id = ? ORDER BY relation, target",
        (art["record_id"],),
    ):
        if kind == "artifact":
            found = _artifacts(reg, "artifact_digest = ?", (target,))
        elif kind == "file":
            found = _artifacts(
                reg, "record_id IN (SELECT record_id FROM reg_files WHERE sha256 = ?) AND kind = 'run'", (target,)
            )
        else:
            found = _artifacts(reg, "run_id = ? AND kind = 'run'", (target,))
        out += [(relation, target, p) for p in found if p["record_id"] != art["record_id"]]
    return out


def children(reg: Registry, art: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(relation, child artifact)`` for each indexed artifact that has ``art`` as a parent."""
    # One indexed lookup per kind of link (an OR across them would scan every link).
    rows = reg.rows(
        "SELECT relation, record_id FROM reg_links WHERE target = ? AND target_kind = 'artifact'",
        (art["artifact_digest"],),
    )
    if art["kind"] == "run":
        rows += reg.rows(
            "SELECT relation, record_id FROM reg_links WHERE target = ? AND target_kind = 'run'", (art["run_id"],)
        )
        rows += reg.rows(
            "SELECT relation, record_id FROM reg_links WHERE target_kind = 'file' AND target IN "
            "(SELECT sha256 FROM reg_files WHERE record_id = ?)",
            (art["record_id"],),
        )
    rows = list(dict.fromkeys((str(r[0]), str(r[1])) for r in rows))
    out = []
    for relation, record_id in rows:
        if record_id != art["record_id"]:
            out += [(str(relation), a) for a in _artifacts(reg, "record_id = ?", (record_id,))]
    return out


def resolve(reg: Registry, digest: str) -> list[dict[str, Any]]:
    """Artifacts named by ``digest``: a record's manifest digest, one of its files, or its statement's SHA-256."""
    d = _hex(digest, "the model/artifact digest")
    found = _artifacts(reg, "artifact_digest = ? OR record_id = ?", (d, d))
    if not found:
        found = _artifacts(reg, "record_id IN (SELECT record_id FROM reg_files WHERE sha256 = ?)", (d,))
    return found


def ancestors(reg: Registry, start: Iterable[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """Every artifact reachable through parent links (the start included), and the edges walked."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, str]] = []
    todo = list(start)
    while todo:
        art = todo.pop()
        if art["record_id"] in nodes:
            continue
        nodes[art["record_id"]] = art
        for relation, target, parent in parents(reg, art):
            edges.append(
                {"child": art["record_id"], "parent": parent["record_id"], "relation": relation, "via": target}
            )
            todo.append(parent)
    return nodes, edges


def descendants(reg: Registry, start: Iterable[dict[str, Any]]) -> dict[str, tuple[dict[str, Any], str]]:
    """Every artifact derived from ``start`` (not included): record id -> (artifact, id of the one it came from)."""
    out: dict[str, tuple[dict[str, Any], str]] = {}
    todo = [(a, a["record_id"]) for a in start]
    seen = {a["record_id"] for a, _ in todo}
    while todo:
        art, _ = todo.pop()
        for _, child in children(reg, art):
            if child["record_id"] in seen:
                continue
            seen.add(child["record_id"])
            out[child["record_id"]] = (child, art["record_id"])
            todo.append((child, art["record_id"]))
    return out


# ---------------------------------------------------------------------------- queries


def by_dataset(reg: Registry, digest: str) -> dict[str, Any]:
    """Runs and signed models that used a dataset (by file digest, Merkle root, or as a carved split's parent)."""
    d = _hex(digest, "the dataset digest")
    rows = reg.rows(
        "SELECT u.record_id, u.name, u.role, u.sha256, u.merkle_root, u.parent_sha256 FROM reg_uses u "
        "WHERE u.sha256 = ? OR u.merkle_root = ? OR u.parent_sha256 = ? ORDER BY u.record_id, u.position",
        (d, d, d),
    )
    uses = []
    for record_id, name, role, sha, root, _parent in rows:
        via = "digest" if sha == d else "merkle_root" if root == d else "carved from it"
        for art in _artifacts(reg, "record_id = ?", (record_id,)):
            uses.append({**art, "dataset": {"name": name, "role": role, "sha256": sha, "via": via}})
    indexed = reg.rows("SELECT records, merkle_root FROM reg_datasets WHERE sha256 = ?", (d,))
    return {
        "query": {"dataset": d},
        "records_indexed": bool(indexed),
        "used_by": uses,
        "runs": sorted({u["run_id"] for u in uses}),
    }


def by_model(reg: Registry, digest: str) -> dict[str, Any]:
    """Everything that went into a model: its record, its ancestors through merges/exports/base models, their data."""
    matches = resolve(reg, digest)
    nodes, edges = ancestors(reg, matches)
    datasets: dict[tuple[str, str], dict[str, Any]] = {}
    for rid, art in nodes.items():
        art["datasets"] = _uses_of(reg, rid)
        for u in art["datasets"]:
            entry = datasets.setdefault((u["sha256"], u["role"]), {**u, "runs": []})
            if art["run_id"] not in entry["runs"]:
                entry["runs"].append(art["run_id"])
    resolved = {(e["child"], e["via"]) for e in edges}
    external: dict[tuple[str, str], dict[str, Any]] = {}
    for rid in nodes:
        for rel, target, kind, name in reg.rows(
            "SELECT relation, target, target_kind, name FROM reg_links WHERE record_id = ?", (rid,)
        ):
            if (rid, target) not in resolved and kind != "run":
                entry = external.setdefault(
                    (rel, target), {"relation": rel, "target": target, "kind": kind, "name": name, "artifacts": []}
                )
                entry["artifacts"].append(rid)
    return {
        "query": {"model": _hex(digest, "the model digest")},
        "matches": [m["record_id"] for m in matches],
        "artifacts": list(nodes.values()),
        "edges": edges,
        "datasets": list(datasets.values()),
        "external_inputs": list(external.values()),
    }


@dataclass(frozen=True)
class _Hit:
    sha256: str
    merkle_root: str
    records: int
    index: int
    proof: dict[str, Any]


class _Chunks:
    """Chunks of indexed datasets, read once per query."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.cache: dict[tuple[int, int], bytes] = {}
        self.meta: dict[int, tuple[str, str, int, bytes]] = {}

    def dataset(self, key: int) -> tuple[str, str, int, bytes]:
        if key not in self.meta:
            row = self.reg.rows(
                "SELECT sha256, merkle_root, records, chunk_tree FROM reg_datasets WHERE ds_key = ?", (key,)
            )[0]
            self.meta[key] = (row[0], row[1], int(row[2]), bytes(row[3]))
        return self.meta[key]

    def leaves(self, key: int, chunk: int) -> bytes:
        if (key, chunk) not in self.cache:
            row = self.reg.rows("SELECT leaves FROM reg_chunks WHERE ds_key = ? AND chunk = ?", (key, chunk))
            self.cache[(key, chunk)] = bytes(row[0][0]) if row else b""
        return self.cache[(key, chunk)]

    def holds(self, key: int, pos: int, digest: bytes) -> bool:
        blob = self.leaves(key, pos // CHUNK)
        off = (pos % CHUNK) * DIGEST_SIZE
        return blob[off : off + DIGEST_SIZE] == digest

    def proof(self, key: int, pos: int, digest: bytes) -> _Hit:
        sha, root, records, tree = self.dataset(key)
        p = build_proof_from_tree(digest, pos, records, self.leaves(key, pos // CHUNK), tree)
        if p.root != root:
            raise RegistryError(f"dataset {sha[:16]}…: its stored chunks do not rebuild its root; re-index it")
        return _Hit(sha, root, records, pos, p.as_dict())


def find_record(reg: Registry, digest: bytes, *, keys: Iterable[int] | None = None) -> list[_Hit]:
    """Every indexed dataset holding the record (first position in each), with an inclusion proof."""
    chunks = _Chunks(reg)
    rows = reg.rows(
        "SELECT ds_key, MIN(pos) FROM reg_records WHERE prefix = ? GROUP BY ds_key ORDER BY ds_key",
        (prefix_key(digest),),
    )
    wanted = None if keys is None else set(keys)
    hits = []
    for key, _ in rows:
        if wanted is not None and key not in wanted:
            continue
        # The prefix may be shared by another record: check positions until the full digest matches.
        positions = reg.rows(
            "SELECT pos FROM reg_records WHERE prefix = ? AND ds_key = ? ORDER BY pos", (prefix_key(digest), key)
        )
        for (pos,) in positions:
            if chunks.holds(key, int(pos), digest):
                hits.append(chunks.proof(key, int(pos), digest))
                break
    return hits


def record_digest_of(spec: str | None = None, *, record_json: str | None = None, digest: str | None = None) -> str:
    """The canonical record digest from ``FILE:LINE`` (JSONL line, 1-based), a JSON text, or a digest."""
    if digest is not None:
        return _hex(digest, "--digest")
    if record_json is not None:
        try:
            return record_digest(json.loads(record_json))
        except json.JSONDecodeError as exc:
            raise InputError(f"--record-json is not valid JSON ({exc.msg} at column {exc.colno})") from None
    if spec is None:
        raise InputError("name the record: FILE:LINE, --record-json JSON or --digest HEX")
    path_text, sep, line_text = spec.rpartition(":")
    if not sep or not line_text.isdigit() or int(line_text) < 1:
        raise InputError(f"{spec!r}: expected FILE:LINE with a 1-based line number (e.g. data/train.jsonl:42)")
    path, line = Path(path_text), int(line_text)
    raw: bytes | None = None
    try:
        with open(path, "rb") as fh:
            for n, text in enumerate(fh, start=1):
                if n == line:
                    raw = text
                    break
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("is a directory; expected a JSONL file", path=path) from None
    if raw is None:
        raise InputError(f"the file has fewer than {line} lines", path=path)
    if not raw.strip():
        raise InputError("the line is blank (blank lines are not records)", path=path, line=line)
    try:
        return record_digest(json.loads(raw))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"the line is not a JSON record ({exc})", path=path, line=line) from None


def by_record(reg: Registry, digest_hex: str) -> dict[str, Any]:
    """Which signed models were trained on a record, each with a Merkle inclusion proof against the signed root.

    ``runs``: records whose datasets hold it (with the role: ``trained`` only for train/preference);
    ``derived``: models built on one of those (merged, exported, trained further); ``not_indexed``:
    datasets with records that indexed runs used but whose record digests the registry does not hold,
    so the answer cannot cover them.
    """
    d = _hex(digest_hex, "the record digest")
    hits = find_record(reg, bytes.fromhex(d))
    runs = []
    direct: list[dict[str, Any]] = []
    for hit in hits:
        rows = reg.rows(
            "SELECT record_id, name, role, merkle_root FROM reg_uses WHERE sha256 = ? ORDER BY record_id, position",
            (hit.sha256,),
        )
        for record_id, name, role, signed_root in rows:
            for art in _artifacts(reg, "record_id = ?", (record_id,)):
                runs.append(
                    {
                        **art,
                        "trained": role in TRAINED_ROLES,
                        "dataset": {
                            "name": name,
                            "role": role,
                            "sha256": hit.sha256,
                            "records": hit.records,
                            "signed_merkle_root": signed_root,
                        },
                        "proof": hit.proof,
                        "proof_matches_signed_root": signed_root == hit.proof["root"],
                    }
                )
                if role in TRAINED_ROLES:
                    direct.append(art)
    derived = [
        {**art, "derived_from": parent}
        for art, parent in descendants(reg, {a["record_id"]: a for a in direct}.values()).values()
    ]
    missing = reg.rows(
        "SELECT r.sha256, r.name FROM reg_dataset_refs r WHERE r.records > 0 "
        "AND NOT EXISTS (SELECT 1 FROM reg_datasets d WHERE d.sha256 = r.sha256) "
        "AND EXISTS (SELECT 1 FROM reg_uses u WHERE u.sha256 = r.sha256) ORDER BY r.sha256"
    )
    return {
        "query": {"record_digest": d},
        "runs": runs,
        "derived": derived,
        "not_indexed": [{"sha256": s, "name": n} for s, n in missing],
    }


def _digests(reg: Registry, sha256: str) -> list[bytes]:
    row = reg.rows("SELECT ds_key FROM reg_datasets WHERE sha256 = ?", (sha256,))
    if not row:
        raise RegistryError(
            f"dataset {sha256} has no indexed records",
            hint="index its data file: bastion registry add-data FILE (or add the run with --data FILE)",
        )
    out: list[bytes] = []
    for (blob,) in reg.rows("SELECT leaves FROM reg_chunks WHERE ds_key = ? ORDER BY chunk", (row[0][0],)):
        out += split_leaves(bytes(blob))
    return out


def diff(reg: Registry, old: str, new: str) -> dict[str, Any]:
    """Records added and removed between two dataset versions, by canonical record digest."""
    a, b = _hex(old, "the first dataset digest"), _hex(new, "the second dataset digest")
    da, db = _digests(reg, a), _digests(reg, b)
    sa, sb = set(da), set(db)
    added = sorted(x.hex() for x in sb - sa)
    removed = sorted(x.hex() for x in sa - sb)
    return {
        "query": {"old": a, "new": b},
        "old_records": len(da),
        "new_records": len(db),
        "unchanged": len(sa & sb),
        "added": added,
        "removed": removed,
    }


def contamination(reg: Registry, digest: str) -> dict[str, Any]:
    """Eval records of a model's run that appear in the training data of any of its ancestors (exact digests).

    Each finding names the eval dataset, the ancestor and its training dataset, and carries the
    inclusion proof of the record in that training dataset. ``not_checked`` lists the eval and
    ancestor training datasets whose record digests are not indexed.
    """
    matches = resolve(reg, digest)
    nodes, edges = ancestors(reg, matches)
    own = {m["record_id"] for m in matches}
    own_runs = {m["run_id"] for m in matches}
    evals: list[dict[str, Any]] = []
    trains: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for rid, art in nodes.items():
        for u in _uses_of(reg, rid):
            if rid in own and u["role"] == "eval":
                evals.append(u)
            elif rid not in own and art["run_id"] not in own_runs and u["role"] in TRAINED_ROLES:
                trains.append((art, u))
    not_checked = [
        {"sha256": u["sha256"], "name": u["name"], "role": u["role"]}
        for u in evals + [t for _, t in trains]
        if not u["records_indexed"]
    ]
    keyed: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {}
    for art, u in trains:
        if u["records_indexed"]:
            row = reg.rows("SELECT ds_key FROM reg_datasets WHERE sha256 = ?", (u["sha256"],))
            keyed.setdefault(int(row[0][0]), []).append((art, u))
    findings = []
    seen: set[tuple[str, str, str]] = set()
    for e in evals:
        if not e["records_indexed"] or not keyed:
            continue
        for rec in dict.fromkeys(_digests(reg, e["sha256"])):
            for hit in find_record(reg, rec, keys=keyed):
                key = int.from_bytes(bytes.fromhex(hit.sha256)[:8], "big", signed=True)
                for art, u in keyed.get(key, []):
                    mark = (rec.hex(), art["run_id"], u["sha256"])  # a run's merge/export: same data
                    if mark in seen:
                        continue
                    seen.add(mark)
                    findings.append(
                        {
                            "record_digest": rec.hex(),
                            "eval_dataset": {"name": e["name"], "sha256": e["sha256"]},
                            "ancestor": {k: art[k] for k in ("record_id", "run_id", "kind", "artifact_digest", "path")},
                            "train_dataset": {"name": u["name"], "role": u["role"], "sha256": u["sha256"]},
                            "proof": hit.proof,
                        }
                    )
    own_overlap = (
        [
            json.loads(r[0]).get("overlap")
            for r in reg.rows(
                "SELECT predicate FROM reg_artifacts WHERE record_id IN (" + ", ".join("?" * len(own)) + ")", tuple(own)
            )
        ]
        if own
        else []
    )
    return {
        "query": {"model": _hex(digest, "the model digest")},
        "matches": sorted(own),
        "ancestors": [n for rid, n in nodes.items() if rid not in own],
        "edges": edges,
        "contaminated_records": sorted({f["record_digest"] for f in findings}),
        "findings": findings,
        "own_train_eval_overlap": own_overlap,
        "not_checked": not_checked,
    }


__all__ = [
    "ancestors",
    "by_dataset",
    "by_model",
    "by_record",
    "children",
    "contamination",
    "descendants",
    "diff",
    "find_record",
    "list_artifacts",
    "parents",
    "record_digest_of",
    "resolve",
]
