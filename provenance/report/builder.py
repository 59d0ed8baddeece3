"""The audit report's content, as one JSON-ready dictionary (format ``bastion-audit-report/v1``).

:func:`build_report` turns a :class:`~bastion.provenance.report.evidence.RunEvidence` into the report
that both the HTML page and ``--json`` show. The keys are stable (tests pin them): every section is
always present, empty when the record has nothing for it. Nothing here copies data records: datasets
appear as names, digests, counts and Merkle roots; the config and training arguments are passed
through :func:`~bastion.provenance.redaction.redact_secrets` again, and anything that pass withholds
(a record written before redaction was complete) is named in ``warnings`` by path, never by value.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from bastion import __version__
from bastion.provenance.predicate import RESERVED_NAMES, DatasetRecord, ModelInput, RunPredicate
from bastion.provenance.redaction import redact_secrets
from bastion.provenance.report.compliance import compliance_rows
from bastion.provenance.report.evidence import RunEvidence

REPORT_FORMAT = "bastion-audit-report/v1"
SECTIONS: tuple[tuple[str, str], ...] = (
    ("summary", "Summary"),
    ("verification", "Signature and verification"),
    ("lineage", "Lineage"),
    ("inputs", "Base model and tokenizer"),
    ("datasets", "Datasets"),
    ("overlap", "Train/eval separation"),
    ("training", "Training curves"),
    ("metrics", "Final metrics"),
    ("config", "Configuration"),
    ("environment", "Environment"),
    ("outputs", "Outputs"),
    ("ledger", "Ledger"),
    ("warnings", "Warnings"),
    ("compliance", "EU AI Act evidence map"),
)
"""(anchor, title) of every section of the page, in order; the compliance table links to these anchors."""

CURVE_KINDS = ("log", "train.end")


def _model(m: ModelInput | None) -> dict[str, Any] | None:
    if m is None:
        return None
    return {
        "path_name": m.path_name,
        "sha256": m.sha256,
        "files": [{"name": f.name, "sha256": f.sha256} for f in m.files],
        "source": None if m.source is None else dict(m.source),
    }


def _dataset(d: DatasetRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": d.name,
        "role": d.role,
        "sha256": d.sha256,
        "size": d.size,
        "format": d.format,
        "records": d.records,
        "merkle_root": d.merkle_root,
        "split": None,
    }
    if d.split is not None:
        parent = d.split.get("parent")
        parent = parent if isinstance(parent, Mapping) else {}
        digest = parent.get("digest")
        method = d.split.get("method")
        method = dict(method) if isinstance(method, Mapping) else {}
        method.pop("eval_indices", None)  # positions are evidence in the record; the page gives their count
        out["split"] = {
            "side": d.split.get("side"),
            "parent": {
                "name": parent.get("name"),
                "sha256": digest.get("sha256") if isinstance(digest, Mapping) else None,
                "records": parent.get("records"),
                "merkle_root": parent.get("merkle_root"),
            },
            "method": method,
        }
    return out


def _curves(entries: Any) -> dict[str, list[list[float]]]:
    """``metric -> [[step, value], ...]`` from the ledger's ``log`` entries (finite numbers only)."""
    curves: dict[str, list[list[float]]] = {}
    for e in entries:
        if e.get("kind") != "log":
            continue
        data = e.get("data")
        if not isinstance(data, Mapping):
            continue
        step = data.get("step")
        metrics = data.get("metrics")
        if isinstance(step, bool) or not isinstance(step, int | float) or not isinstance(metrics, Mapping):
            continue
        for name, value in metrics.items():
            if name == "epoch" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                curves.setdefault(str(name), []).append([step, value])
    return dict(sorted(curves.items()))


def _outputs(statement: Mapping[str, Any]) -> dict[str, Any]:
    files: list[dict[str, Any]] = []
    subjects = statement.get("subject")
    for s in subjects if isinstance(subjects, list) else []:
        if not isinstance(s, Mapping):
            continue
        digest = s.get("digest")
        sha = digest.get("sha256") if isinstance(digest, Mapping) else None
        files.append({"name": str(s.get("name")), "sha256": sha if isinstance(sha, str) else None})
    files.sort(key=lambda f: str(f["name"]))
    manifest = "".join(f"{f['sha256']}  {f['name']}\n" for f in files)
    return {
        "sha256": hashlib.sha256(manifest.encode("utf-8")).hexdigest() if files else None,
        "files": files,
    }


def _ledger_section(evidence: RunEvidence) -> dict[str, Any]:
    led = evidence.ledger
    kinds: dict[str, int] = {}
    for e in led.entries:
        kinds[str(e.get("kind"))] = kinds.get(str(e.get("kind")), 0) + 1
    pred = evidence.predicate
    first = led.entries[0].get("time") if led.entries else None
    last = led.entries[-1].get("time") if led.entries else None
    return {
        "path": led.path,
        "head": None if pred is None else pred.ledger.head,
        "entries": None if pred is None else pred.ledger.entries,
        "entries_read": len(led.entries),
        "verified": led.verified,
        "problem": led.problem,
        "problem_line": led.problem_line,
        "kinds": dict(sorted(kinds.items())),
        "first_entry_at": first,
        "last_entry_at": last,
        "checkpoints": [
            {
                "step": (e.get("data") or {}).get("step"),
                "path": (e.get("data") or {}).get("path"),
                "sha256": ((e.get("data") or {}).get("digest") or {}).get("sha256"),
            }
            for e in led.entries
            if e.get("kind") == "checkpoint" and isinstance(e.get("data"), Mapping)
        ],
    }


def _exports_in_ledger(entries: Any) -> list[dict[str, Any]]:
    """Entries a run's ledger holds for directories recorded with ``record_export`` (``merge``, ``export``, …)."""
    out = []
    for e in entries:
        kind, data = e.get("kind"), e.get("data")
        if kind in RESERVED_NAMES or not isinstance(data, Mapping) or not isinstance(data.get("path"), str):
            continue
        digest = data.get("digest")
        sha = digest.get("sha256") if isinstance(digest, Mapping) else None
        if isinstance(sha, str):
            out.append({"kind": str(kind), "path": data["path"], "sha256": sha, "method": data.get("method")})
    return out


def _lineage(
    pred: RunPredicate | None, outputs: Mapping[str, Any], ledger: Mapping[str, Any], entries: Any
) -> dict[str, Any]:
    """Nodes and edges of what the record itself says: inputs -> run -> outputs, and parents."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []

    def node(node_id: str, kind: str, label: str, sha256: str | None, column: int, detail: str = "") -> str:
        if all(n["id"] != node_id for n in nodes):
            nodes.append(
                {"id": node_id, "kind": kind, "label": label, "sha256": sha256, "column": column, "detail": detail}
            )
        return node_id

    if pred is None:
        return {"nodes": nodes, "edges": edges}
    run = node(f"run:{pred.run_id}", "run", pred.run_id, None, 2, pred.framework or "")
    if pred.base_model is not None:
        b = node(f"model:{pred.base_model.sha256}", "base_model", pred.base_model.path_name, pred.base_model.sha256, 1)
        edges.append({"from": b, "to": run, "relation": "base model"})
    if pred.tokenizer is not None and (pred.base_model is None or pred.tokenizer.sha256 != pred.base_model.sha256):
        t = node(f"model:{pred.tokenizer.sha256}", "tokenizer", pred.tokenizer.path_name, pred.tokenizer.sha256, 1)
        edges.append({"from": t, "to": run, "relation": "tokenizer"})
    for d in pred.datasets:
        dn = node(f"dataset:{d.sha256}", "dataset", d.name, d.sha256, 1, d.role)
        edges.append({"from": dn, "to": run, "relation": d.role})
        parent = (d.split or {}).get("parent")
        if isinstance(parent, Mapping):
            pd = parent.get("digest")
            psha = pd.get("sha256") if isinstance(pd, Mapping) else None
            pn = node(f"dataset:{psha}", "dataset", str(parent.get("name")), psha, 0, "carved into splits")
            edges.append({"from": pn, "to": dn, "relation": f"carved ({d.split.get('side') if d.split else '?'})"})
    if pred.previous_run is not None:
        p = pred.previous_run
        pn = node(f"run:{p.run_id}", "previous_run", p.run_id or "unknown run", p.ledger_head, 1, p.status)
        edges.append({"from": pn, "to": run, "relation": "earlier run in the same directory"})
    if outputs.get("sha256") and not pred.exports:
        n = len(outputs["files"])
        label = f"{n} file{'' if n == 1 else 's'}"
        what = "checkpoint" if pred.checkpoint is not None else "outputs"
        o = node(f"output:{outputs['sha256']}", what, label, outputs["sha256"], 3)
        edges.append({"from": run, "to": o, "relation": "produced"})
    for c in ledger.get("checkpoints", []):
        cn = node(f"output:{c['sha256']}", "checkpoint", f"{c['path']} (step {c['step']})", c["sha256"], 3)
        edges.append({"from": run, "to": cn, "relation": "checkpoint"})
    for x in _exports_in_ledger(entries):
        xn = node(f"output:{x['sha256']}", x["kind"], x["path"], x["sha256"], 3, str(x["method"] or x["kind"]))
        edges.append({"from": run, "to": xn, "relation": x["kind"]})
    for kind, ref in sorted(pred.exports.items()):
        # This record is the export's own: its subjects are the exported directory.
        details = ref.details
        digest = details.get("digest")
        sha = digest.get("sha256") if isinstance(digest, Mapping) else outputs.get("sha256")
        en = node(f"output:{sha}", kind, ref.path, sha, 3, str(details.get("method") or kind))
        if not any(e["to"] == en for e in edges):
            edges.append({"from": run, "to": en, "relation": kind})
        for role in ("base_model", "adapter"):
            part = details.get(role)
            if isinstance(part, Mapping):
                pd = part.get("digest")
                psha = pd.get("sha256") if isinstance(pd, Mapping) else None
                pid = node(f"model:{psha or role}", role, str(part.get("path_name")), psha, 1)
                edges.append({"from": pid, "to": en, "relation": f"merged ({role.replace('_', ' ')})"})
        ts = details.get("training_statement")
        if isinstance(ts, Mapping) and isinstance(ts.get("sha256"), str):
            tn = node(f"statement:{ts['sha256']}", "training_statement", "training run statement", ts["sha256"], 1)
            edges.append({"from": tn, "to": en, "relation": "parent record"})
    return {"nodes": nodes, "edges": edges}


def _registry_node(art: Mapping[str, Any], column: int, relation: str) -> dict[str, Any]:
    flag = "" if art.get("verified") else ", UNVERIFIED"
    return {
        "id": f"registry:{art['record_id']}",
        "kind": f"indexed {art['kind']}",
        "label": str(art["run_id"]),
        "sha256": art.get("artifact_digest"),
        "column": column,
        "detail": f"{relation}{flag}",
    }


def _with_registry(lineage: dict[str, Any], registry: Mapping[str, Any] | None, record_id: str | None) -> None:
    """Add the registry's parents (left) and derived artifacts (right) of this record to the graph.

    A parent links to the node of the input it produced (the base model, a merge input) when the record
    names it, else to the run; derived artifacts hang off this record's outputs.
    """
    lineage["registry"] = None if registry is None else dict(registry)
    if registry is None or record_id is None:
        return
    nodes, edges = lineage["nodes"], lineage["edges"]
    ids = {n["id"] for n in nodes}
    run = next((n["id"] for n in nodes if n["kind"] == "run"), None)
    out = next((n["id"] for n in nodes if n["column"] == 3), run)
    arts = {a["record_id"]: a for a in registry.get("ancestors") or []}
    depth = {record_id: 0}
    todo = [record_id]
    while todo:  # breadth first: a parent sits one column left of the nearest child
        child = todo.pop(0)
        for e in registry.get("edges") or []:
            if e["child"] != child or e["parent"] not in arts:
                continue
            parent = arts[e["parent"]]
            pid = f"registry:{parent['record_id']}"
            if pid not in ids:
                depth[parent["record_id"]] = depth[child] + 1
                nodes.append(_registry_node(parent, 1 - depth[parent["record_id"]], e["relation"]))
                ids.add(pid)
                todo.append(parent["record_id"])
            if child == record_id:
                target = f"model:{e['via']}" if f"model:{e['via']}" in ids else run
            else:
                target = f"registry:{child}"
            if target is None:
                continue
            same = next((x for x in edges if x["from"] == pid and x["to"] == target), None)
            if same is None:
                edges.append({"from": pid, "to": target, "relation": f"produced ({e['relation']})"})
            elif e["relation"] not in same["relation"]:  # one artifact as base model and tokenizer: one arrow
                same["relation"] = same["relation"][:-1] + f", {e['relation']})"
    for d in registry.get("derived") or []:
        art, source = d["artifact"], d["from"]
        did = f"registry:{art['record_id']}"
        if did in ids:
            continue
        level = 1
        s = source
        while s != record_id and s is not None:
            s = next((x["from"] for x in registry.get("derived") or [] if x["artifact"]["record_id"] == s), None)
            level += 1
        nodes.append(_registry_node(art, 3 + level, str(d.get("relation") or "derived")))
        ids.add(did)
        relation = str(d.get("relation") or "derived")
        own = f"output:{art.get('artifact_digest')}"
        if source == record_id and own in ids:  # an export this record names, indexed with its own record
            frm: str | None = own
            relation = "indexed record"
        else:
            frm = out if source == record_id else f"registry:{source}"
        if frm is not None:
            edges.append({"from": frm, "to": did, "relation": relation})


def _redacted(value: Any, where: str, warnings: list[str]) -> Any:
    red = redact_secrets(value)
    if red.value == value:  # nothing new (values the record already withheld stay "[REDACTED]")
        return value
    fresh = [p for p in red.paths if p]
    if fresh:
        warnings.append(
            f"{where}: {len(fresh)} value(s) that look like credentials are withheld in this report "
            f"({', '.join(fresh[:5])}); the record itself was written without that redaction"
        )
    return red.value


def build_report(evidence: RunEvidence, *, generated_at: datetime | None = None) -> dict[str, Any]:
    """The report's content (see the module docstring); JSON-ready, keys stable across runs."""
    pred = evidence.predicate
    when = (generated_at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    v = evidence.verification
    report_warnings: list[str] = []
    if evidence.predicate_problem:
        report_warnings.append(f"the run predicate is malformed: {evidence.predicate_problem}")
    if not evidence.trust.given:
        report_warnings.append(
            "no trust material was given (--key, --certificate-chain or --identity): "
            "the signature could not be checked against a trusted signer"
        )
    outputs = _outputs(evidence.statement)
    ledger = _ledger_section(evidence)
    ledger_warnings = [
        {"code": str((e.get("data") or {}).get("code")), "message": str((e.get("data") or {}).get("message"))}
        for e in evidence.ledger.entries
        if e.get("kind") == "warning" and isinstance(e.get("data"), Mapping)
    ]
    config = None
    if pred is not None and pred.config is not None:
        config = {
            "sha256": pred.config.sha256,
            "source": pred.config.source,
            "redacted": list(pred.config.redacted),
            "value": _redacted(pred.config.value, "config", report_warnings),
        }
    training_arguments = None
    if pred is not None and pred.training_arguments is not None:
        training_arguments = {
            "sha256": pred.training_arguments.sha256,
            "redacted": list(pred.training_arguments.redacted),
            "value": _redacted(dict(pred.training_arguments.value), "training arguments", report_warnings),
        }
    environment = _redacted(dict(pred.environment) if pred else {}, "environment", report_warnings)
    record_warnings = _redacted(list(pred.warnings) if pred else [], "record warnings", report_warnings)
    ledger_warnings = _redacted(ledger_warnings, "ledger warnings", report_warnings)
    datasets = [_dataset(d) for d in pred.datasets] if pred else []
    has_eval = any(d["role"] == "eval" for d in datasets)
    has_train = any(d["role"] == "train" for d in datasets)
    report: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "generated_at": when,
        "generator": {"name": "bastion", "version": __version__},
        "source": dict(evidence.source),
        "run": {
            "run_id": None if pred is None else pred.run_id,
            "framework": None if pred is None else pred.framework,
            "predicate_type": evidence.statement.get("predicateType"),
            "started_at": None if pred is None else pred.started_at,
            "finished_at": None if pred is None else pred.finished_at,
            "bastion_version": None if pred is None else pred.bastion_version,
            "strict": None if pred is None else pred.strict,
            "checkpoint": None if pred is None or pred.checkpoint is None else pred.checkpoint.to_json(),
            "exports": sorted(pred.exports) if pred else [],
        },
        "verification": {
            "ok": v.ok,
            "checked_at": None
            if evidence.verified_at is None
            else evidence.verified_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "trust": evidence.trust.describe(),
            "passed": list(v.passed),
            "failures": [f.as_dict() for f in v.failures],
            "signer": v.signer,
            "files_checked": v.files,
            "signature_files": dict(evidence.signature_files),
        },
        "base_model": _model(pred.base_model) if pred else None,
        "tokenizer": _model(pred.tokenizer) if pred else None,
        "datasets": datasets,
        "overlap": {
            "train_eval_records": None if pred is None else pred.overlap,
            "computed": pred is not None and pred.overlap is not None,
            "has_train": has_train,
            "has_eval": has_eval,
        },
        "curves": _curves(evidence.ledger.entries),
        "metrics": {
            "final": {} if pred is None else dict(pred.metrics.final),
            "global_step": None if pred is None else pred.metrics.global_step,
            "log_entries": None if pred is None else pred.metrics.log_entries,
            "non_finite": {} if pred is None else dict(pred.metrics.non_finite or {}),
        },
        "config": config,
        "training_arguments": training_arguments,
        "environment": environment,
        "outputs": outputs,
        "ledger": ledger,
        "warnings": {"record": record_warnings, "ledger": ledger_warnings, "report": report_warnings},
        "lineage": _lineage(pred, outputs, ledger, evidence.ledger.entries),
    }
    record_id = (evidence.registry_lineage or {}).get("record_id")
    _with_registry(report["lineage"], evidence.registry_lineage, record_id)
    report["compliance"] = compliance_rows(report)
    return report


__all__ = ["REPORT_FORMAT", "SECTIONS", "build_report"]
