"""The report as one self-contained HTML page: inline CSS and SVG, no script, no external asset.

The page's Content-Security-Policy (``default-src 'none'``, inline styles and ``data:`` images only)
makes a browser refuse anything that would load from elsewhere, so the page opens offline exactly as
it was written. Every value is escaped (:func:`~bastion.provenance.report.svg.esc`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bastion.provenance.report.builder import SECTIONS
from bastion.provenance.report.svg import chart_groups, esc, line_chart, lineage_graph

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1b1f24; }
header { background: #0d1b2a; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 20px; }
header p { margin: 0; opacity: .85; }
nav { padding: 8px 28px; background: #eef2f6; border-bottom: 1px solid #d0d7de; font-size: 13px; }
nav a { margin-right: 12px; color: #0b4f9c; text-decoration: none; }
main { padding: 0 28px 40px; max-width: 1200px; }
section { border-bottom: 1px solid #e5e8eb; padding: 10px 0 18px; }
h2 { font-size: 17px; margin: 14px 0 8px; }
table { border-collapse: collapse; margin: 6px 0; font-size: 13px; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12px;
  word-break: break-all; }
.verdict { display: inline-block; padding: 6px 12px; border-radius: 6px; font-weight: 600; font-size: 15px; }
.ok { background: #dafbe1; color: #116329; border: 1px solid #4ac26b; }
.fail { background: #ffebe9; color: #a40e26; border: 1px solid #ff8182; }
.warn { background: #fff8c5; color: #7d4e00; border: 1px solid #d4a72c; }
.status-recorded { color: #116329; font-weight: 600; }
.status-partial { color: #7d4e00; font-weight: 600; }
.status-missing { color: #a40e26; font-weight: 600; }
.status-not-in-record { color: #57606a; }
.muted { color: #57606a; }
code.nowrap { white-space: nowrap; word-break: normal; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
svg.chart .plot-area { fill: #fff; stroke: #d0d7de; }
svg.chart .grid { stroke: #eaeef2; }
svg.chart text { font-size: 11px; fill: #57606a; }
svg.chart .chart-title { font-size: 13px; font-weight: 600; fill: #1b1f24; }
svg.chart .legend { fill: #1b1f24; }
svg.lineage .node rect { fill: #f6f8fa; stroke: #8c959f; }
svg.lineage .node-run rect { fill: #ddf4ff; stroke: #0969da; }
svg.lineage .col-3 rect { fill: #dafbe1; stroke: #2da44e; }
svg.lineage text { font-size: 11px; fill: #1b1f24; }
svg.lineage .node-kind { font-weight: 600; fill: #57606a; }
svg.lineage .node-digest { font-family: ui-monospace, Menlo, Consolas, monospace; fill: #57606a; }
svg.lineage .edge { fill: none; stroke: #555; stroke-width: 1.4; }
details summary { cursor: pointer; color: #0b4f9c; }
pre { background: #f6f8fa; padding: 8px; overflow-x: auto; font-size: 12px; }
"""


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], *, cls: str = "") -> str:
    """A table; ``rows`` cells are HTML already (callers escape)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _kv(rows: Iterable[tuple[str, str]]) -> str:
    return "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _code(value: Any) -> str:
    return f"<code>{esc(value)}</code>"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return esc(f"{value:.6g}")
    return esc(value)


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{body}</section>'


def _summary(r: Mapping[str, Any]) -> str:
    run, v = r["run"], r["verification"]
    verdict = (
        '<span class="verdict ok" id="verdict">VERIFIED: every check passed</span>'
        if v["ok"]
        else f'<span class="verdict fail" id="verdict">VERIFICATION FAILED: {len(v["failures"])} check(s) failed</span>'
    )
    rows = [
        ("run id", _code(run["run_id"])),
        ("framework", esc(run["framework"])),
        ("started / finished", f"{esc(run['started_at'])} / {esc(run['finished_at'])}"),
        ("base model", esc((r["base_model"] or {}).get("path_name"))),
        ("datasets", esc(", ".join(f"{d['name']} ({d['role']})" for d in r["datasets"]) or "none recorded")),
        ("outputs", f"{len(r['outputs']['files'])} files, manifest {_code(r['outputs']['sha256'])}"),
        ("source", f"{esc(r['source'].get('kind'))} {_code(r['source'].get('path'))}"),
        ("report generated", f"{esc(r['generated_at'])} by bastion {esc(r['generator']['version'])}"),
    ]
    if run["checkpoint"]:
        rows.insert(1, ("checkpoint record", esc(f"step {run['checkpoint']['step']} at {run['checkpoint']['path']}")))
    if run["exports"]:
        rows.insert(1, ("export record", esc(", ".join(run["exports"]))))
    return f"<p>{verdict}</p>" + _kv(rows)


def _signer(s: Mapping[str, Any] | None) -> str:
    if not s:
        return '<span class="muted">no trusted signer established</span>'
    return "<br>".join(f"{esc(k)}: {_code(json.dumps(v) if not isinstance(v, str) else v)}" for k, v in s.items())


def _verification(r: Mapping[str, Any]) -> str:
    v = r["verification"]
    trust = v["trust"]
    given = [f"{k}: {esc(', '.join(x) if isinstance(x, list) else x)}" for k, x in trust.items() if x not in (None, [])]
    parts = [
        _kv(
            [
                (
                    "result",
                    '<span class="ok verdict">passed</span>' if v["ok"] else '<span class="fail verdict">failed</span>',
                ),
                ("checks passed", esc(", ".join(v["passed"]) or "none")),
                ("signer (verified)", _signer(v["signer"])),
                ("files checked", esc(v["files_checked"])),
                (
                    "signature files",
                    esc(", ".join(f"{k}: {'present' if p else 'absent'}" for k, p in v["signature_files"].items())),
                ),
                ("trust material", "<br>".join(given) or '<span class="muted">none given</span>'),
                ("checked at", esc(v["checked_at"] or r["generated_at"])),
            ]
        )
    ]
    if v["failures"]:
        parts.append("<h3>Failed checks</h3>")
        parts.append(
            _table(
                ["check", "what", "expected", "found"],
                (
                    [
                        f'<code class="nowrap">{esc(f["check"])}</code>',
                        esc(f["message"]),
                        _code(f["expected"]),
                        _code(f["found"]),
                    ]
                    for f in v["failures"]
                ),
                cls="failures",
            )
        )
    return "".join(parts)


def _model_rows(label: str, m: Mapping[str, Any] | None) -> str:
    if m is None:
        return f"<p>{esc(label)}: not recorded</p>"
    src = m.get("source") or {}
    head = _kv(
        [
            ("name", esc(m["path_name"])),
            ("manifest sha256", _code(m["sha256"])),
            ("source", esc(", ".join(f"{k}={v}" for k, v in src.items()) or "local directory")),
            ("files", esc(len(m["files"]))),
        ]
    )
    files = _table(["file", "sha256"], ([esc(f["name"]), _code(f["sha256"])] for f in m["files"]))
    return f"<h3>{esc(label)}</h3>{head}<details><summary>{len(m['files'])} files</summary>{files}</details>"


def _inputs(r: Mapping[str, Any]) -> str:
    out = _model_rows("Base model", r["base_model"])
    tok = r["tokenizer"]
    if tok is not None and r["base_model"] is not None and tok["sha256"] == r["base_model"]["sha256"]:
        return out + "<p>Tokenizer: the base model's (same manifest digest).</p>"
    return out + _model_rows("Tokenizer", tok)


def _datasets(r: Mapping[str, Any]) -> str:
    if not r["datasets"]:
        return "<p>No datasets recorded.</p>"
    rows = []
    for d in r["datasets"]:
        split = d["split"]
        carved = "-"
        if split:
            p = split["parent"]
            m = split["method"]
            carved = (
                esc(
                    f"{split['side']} side of {p['name']} ({p['records']} records), "
                    + ", ".join(f"{k}={v}" for k, v in sorted(m.items()))
                )
                + f"<br>parent {_code(p['sha256'])}"
            )
        rows.append(
            [
                esc(d["name"]),
                f'<span class="role role-{esc(d["role"])}">{esc(d["role"])}</span>',
                _num(d["records"]),
                _num(d["size"]),
                esc(d["format"]),
                _code(d["sha256"]),
                _code(d["merkle_root"]),
                carved,
            ]
        )
    return _table(
        ["name", "role", "records", "bytes", "format", "sha256", "Merkle root", "carved split"], rows, cls="datasets"
    )


def _overlap(r: Mapping[str, Any]) -> str:
    o = r["overlap"]
    n = o["train_eval_records"]
    if not o["has_eval"]:
        return "<p>No eval data set recorded: there is no held-out set to keep separate.</p>"
    if n is None:
        return '<p><span class="verdict warn">not computed</span> (a data file without per-record digests)</p>'
    cls = "ok" if n == 0 else "fail"
    return (
        f'<p><span class="verdict {cls}" id="overlap-count">{esc(n)} eval record(s) also in the training data'
        "</span></p>"
        "<p class=muted>Exact overlap: records whose RFC 8785 canonical digest occurs on both sides.</p>"
    )


def _training(r: Mapping[str, Any]) -> str:
    groups = chart_groups(r["curves"])
    if not groups:
        return "<p>The ledger holds no logged metrics.</p>"
    charts = "".join(line_chart(title, series) for title, series in groups)
    note = (
        ""
        if r["ledger"]["verified"]
        else '<p class="verdict fail">The ledger does not verify: these curves are from an unverified file.</p>'
    )
    return note + f'<div class="charts">{charts}</div>'


def _metrics(r: Mapping[str, Any]) -> str:
    m = r["metrics"]
    rows = [[esc(k), _num(v)] for k, v in sorted(m["final"].items())]
    rows += [[esc(k), esc(v) + " (non-finite)"] for k, v in sorted(m["non_finite"].items())]
    return _kv([("global step", esc(m["global_step"])), ("log entries", esc(m["log_entries"]))]) + _table(
        ["metric", "last value"], rows
    )


def _config(r: Mapping[str, Any]) -> str:
    parts = []
    for label, c in (("Config", r["config"]), ("Training arguments", r["training_arguments"])):
        if c is None:
            parts.append(f"<p>{esc(label)}: not recorded</p>")
            continue
        withheld = ", ".join(c["redacted"]) or "none"
        parts.append(
            f"<h3>{esc(label)}</h3>"
            + _kv(
                [
                    ("sha256 (RFC 8785)", _code(c["sha256"])),
                    ("source", esc(c.get("source", "framework"))),
                    ("credentials withheld at", esc(withheld)),
                ]
            )
            + "<details><summary>value</summary><pre>"
            + esc(json.dumps(c["value"], indent=2, sort_keys=True))
            + "</pre></details>"
        )
    return "".join(parts)


def _environment(r: Mapping[str, Any]) -> str:
    env = dict(r["environment"])
    packages = env.pop("packages", {}) or {}
    rows = [(str(k), esc(v if not isinstance(v, dict | list) else json.dumps(v))) for k, v in sorted(env.items())]
    pk = _table(["package", "version"], ([esc(k), esc(v)] for k, v in sorted(packages.items())))
    return _kv(rows) + pk


def _outputs(r: Mapping[str, Any]) -> str:
    o = r["outputs"]
    head = f"<p>{len(o['files'])} files; manifest sha256 {_code(o['sha256'])}</p>"
    return head + _table(["file", "sha256"], ([esc(f["name"]), _code(f["sha256"])] for f in o["files"]))


def _ledger(r: Mapping[str, Any]) -> str:
    led = r["ledger"]
    status = (
        '<span class="verdict ok">verifies against the signed head</span>'
        if led["verified"]
        else f'<span class="verdict fail">does not verify: {esc(led["problem"])}</span>'
    )
    cps = "; ".join(f"step {c['step']} {c['path']}" for c in led["checkpoints"]) or "none"
    return _kv(
        [
            ("status", status),
            ("path", _code(led["path"])),
            ("head", _code(led["head"])),
            ("entries (signed / read)", esc(f"{led['entries']} / {led['entries_read']}")),
            ("entry kinds", esc(", ".join(f"{k} ×{n}" for k, n in led["kinds"].items()))),
            ("first / last entry", f"{esc(led['first_entry_at'])} / {esc(led['last_entry_at'])}"),
            ("checkpoints", esc(cps)),
        ]
    )


def _warnings(r: Mapping[str, Any]) -> str:
    w = r["warnings"]
    items = [f"<li>record: {esc(x)}</li>" for x in w["record"]]
    items += [f"<li>ledger ({esc(x['code'])}): {esc(x['message'])}</li>" for x in w["ledger"]]
    items += [f"<li>report: {esc(x)}</li>" for x in w["report"]]
    return f'<ul id="warning-list">{"".join(items)}</ul>' if items else "<p>No warnings.</p>"


def _lineage(r: Mapping[str, Any]) -> str:
    lin = r["lineage"]
    graph = lineage_graph(lin["nodes"], lin["edges"])
    if not graph:
        return "<p>No lineage: the predicate could not be read.</p>"
    by_id = {n["id"]: n for n in lin["nodes"]}
    rows = (
        [
            esc(by_id[e["from"]]["label"]),
            esc(e["relation"]),
            esc(by_id[e["to"]]["label"]),
            _code(by_id[e["from"]]["sha256"]),
            _code(by_id[e["to"]]["sha256"]),
        ]
        for e in lin["edges"]
    )
    return (
        (
            "<p class=muted>What this record itself says, and (boxes marked <em>indexed</em>) the parents and "
            f"derived artifacts the run registry {esc(lin['registry']['registry'])} holds.</p>"
            if lin.get("registry")
            else "<p class=muted>What this record itself says; links across runs come from the registry "
            "(<code>bastion report --model DIGEST</code>).</p>"
        )
        + graph
        + _table(["from", "relation", "to", "from sha256", "to sha256"], rows)
    )


def _compliance(r: Mapping[str, Any]) -> str:
    titles = dict(SECTIONS)
    rows = []
    for row in r["compliance"]:
        links = ", ".join(f'<a href="#{esc(s)}">{esc(titles.get(s, s))}</a>' for s in row["sections"]) or "-"
        status = row["status"]
        rows.append(
            [
                esc(row["ref"]),
                esc(row["requirement"]),
                esc(row["evidence"]),
                links,
                f'<span class="status-{esc(status.replace(" ", "-"))}">{esc(status)}</span>',
            ]
        )
    return (
        "<p class=muted>Regulation (EU) 2024/1689, paraphrased. A map to the evidence in this record, "
        "not a conformity assessment.</p>"
        + _table(["item", "requirement", "evidence in the run record", "where", "status"], rows, cls="compliance")
    )


RENDERERS = {
    "summary": _summary,
    "verification": _verification,
    "lineage": _lineage,
    "inputs": _inputs,
    "datasets": _datasets,
    "overlap": _overlap,
    "training": _training,
    "metrics": _metrics,
    "config": _config,
    "environment": _environment,
    "outputs": _outputs,
    "ledger": _ledger,
    "warnings": _warnings,
    "compliance": _compliance,
}


def render_html(report: Mapping[str, Any]) -> str:
    """The page for a :func:`~bastion.provenance.report.builder.build_report` dictionary."""
    run_id = report["run"]["run_id"]
    nav = "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in SECTIONS)
    body = "".join(_section(a, t, RENDERERS[a](report)) for a, t in SECTIONS)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>Audit report: run {esc(run_id)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>Training-run audit report</h1><p>run {esc(run_id)} · {esc(report['format'])}</p></header>"
        f"<nav>{nav}</nav><main>{body}</main></body></html>\n"
    )


__all__ = ["CSP", "render_html"]
