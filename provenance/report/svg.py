"""Inline SVG for the report page: metric line charts and the lineage graph, drawn in Python.

No script and no external asset: the page's Content-Security-Policy allows neither. Every text that
comes from a record is escaped with :func:`esc`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

MAX_PATH_POINTS = 1500
"""A series with more logged points is drawn from an even sample of them (the JSON keeps every point)."""
MAX_MARKERS = 200
"""Above this many points in a series, no per-point markers (they would cover the line)."""
PALETTE = ("#1f6feb", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285", "#c2255c", "#5c940d")


def esc(value: Any) -> str:
    """HTML/SVG-escaped text of any value (quotes included, so it is safe in attributes too)."""
    return escape("-" if value is None else str(value), quote=True)


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi == lo:
        pad = abs(hi) * 0.05 or 1.0
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks: list[float] = []
    t = start
    while t <= hi + step * 0.5 and len(ticks) < 50:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def _sample(points: Sequence[Sequence[float]]) -> Sequence[Sequence[float]]:
    """At most :data:`MAX_PATH_POINTS` points, evenly spaced, first and last kept."""
    n = len(points)
    if n <= MAX_PATH_POINTS:
        return points
    return [points[round(i * (n - 1) / (MAX_PATH_POINTS - 1))] for i in range(MAX_PATH_POINTS)]


def line_chart(
    title: str, series: Mapping[str, Sequence[Sequence[float]]], *, width: int = 560, height: int = 280
) -> str:
    """One chart: x = training step, y = value; a path per series (a marker for each point), a legend."""
    legend_rows = (len(series) + 2) // 3
    left, right, top, bottom = 64, 16, 30 + 16 * legend_rows, 40
    pw, ph = width - left - right, height - top - bottom
    points = [(float(x), float(y)) for pts in series.values() for x, y in pts]
    if not points:
        return ""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    xt = _nice_ticks(min(xs), max(xs))
    yt = _nice_ticks(min(ys), max(ys))
    x0, x1 = min(xt[0], min(xs)), max(xt[-1], max(xs))
    y0, y1 = min(yt[0], min(ys)), max(yt[-1], max(ys))

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / ((y1 - y0) or 1) * ph

    out = [
        f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{esc(title)}">',
        f"<title>{esc(title)}</title>",
        f'<text x="{left}" y="18" class="chart-title">{esc(title)}</text>',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="plot-area"/>',
    ]
    for t in yt:
        y = sy(t)
        out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{esc(_fmt(t))}</text>')
    for t in xt:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" class="grid"/>')
        out.append(f'<text x="{x:.1f}" y="{top + ph + 16}" class="tick" text-anchor="middle">{esc(_fmt(t))}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" class="axis-label" text-anchor="middle">step</text>')
    for i, (name, all_pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = _sample(all_pts)
        coords = [(sx(float(x)), sy(float(y))) for x, y in pts]
        if len(coords) > 1:
            d = "M" + " L".join(f"{x:.2f} {y:.2f}" for x, y in coords)
            out.append(
                f'<path d="{d}" fill="none" stroke="{color}" stroke-width="2" class="series" '
                f'data-series="{esc(name)}"/>'
            )
        for (x, y), (sx_, sy_) in zip(coords if len(coords) <= MAX_MARKERS else (), pts, strict=False):
            out.append(
                f'<circle cx="{x:.2f}" cy="{y:.2f}" r="3" fill="{color}"><title>{esc(name)} at step '
                f"{esc(_fmt(float(sx_)))}: {esc(_fmt(float(sy_)))}</title></circle>"
            )
        lx = left + 150 * (i % 3)
        ly = 38 + 16 * (i // 3)
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="{ly}" class="legend">{esc(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)


def chart_groups(curves: Mapping[str, Sequence[Sequence[float]]]) -> list[tuple[str, dict[str, Any]]]:
    """Which charts the page draws: all ``*loss`` metrics together, then each other metric with 2+ points."""
    losses = {k: v for k, v in curves.items() if k.endswith("loss")}
    groups: list[tuple[str, dict[str, Any]]] = []
    if losses:
        groups.append(("loss", dict(losses)))
    for name, pts in curves.items():
        if name not in losses and len(pts) >= 2:
            groups.append((name, {name: pts}))
    return groups


BOX_W, BOX_H, COL_GAP, ROW_GAP = 230, 50, 70, 14
KIND_LABEL = {
    "run": "training run",
    "base_model": "base model",
    "tokenizer": "tokenizer",
    "dataset": "dataset",
    "previous_run": "earlier run",
    "outputs": "model outputs",
    "checkpoint": "checkpoint",
    "adapter": "adapter",
    "training_statement": "parent record",
}


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def lineage_graph(nodes: Sequence[Mapping[str, Any]], edges: Sequence[Mapping[str, str]]) -> str:
    """Columns of boxes (parents left, the run in the middle, outputs right) joined by labelled arrows."""
    if not nodes:
        return ""
    columns: dict[int, list[Mapping[str, Any]]] = {}
    for n in nodes:
        columns.setdefault(int(n["column"]), []).append(n)
    used = sorted(columns)
    tallest = max(len(c) for c in columns.values())
    height = tallest * (BOX_H + ROW_GAP) + 20
    width = len(used) * (BOX_W + COL_GAP) - COL_GAP + 20
    pos: dict[str, tuple[float, float]] = {}
    for ci, col in enumerate(used):
        items = columns[col]
        offset = (height - len(items) * (BOX_H + ROW_GAP) + ROW_GAP) / 2
        for ri, n in enumerate(items):
            pos[str(n["id"])] = (10 + ci * (BOX_W + COL_GAP), offset + ri * (BOX_H + ROW_GAP))
    out = [
        f'<svg class="lineage" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'xmlns="http://www.w3.org/2000/svg" aria-label="lineage graph">',
        "<title>lineage graph</title>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for e in edges:
        if e["from"] not in pos or e["to"] not in pos:
            continue
        ax, ay = pos[e["from"]]
        bx, by = pos[e["to"]]
        x1, y1 = ax + BOX_W, ay + BOX_H / 2
        x2, y2 = bx, by + BOX_H / 2
        mid = (x1 + x2) / 2
        out.append(
            f'<path d="M{x1:.1f} {y1:.1f} C{mid:.1f} {y1:.1f} {mid:.1f} {y2:.1f} {x2 - 2:.1f} {y2:.1f}" '
            f'class="edge" marker-end="url(#arrow)"><title>{esc(e["relation"])}</title></path>'
        )
    for n in nodes:
        x, y = pos[str(n["id"])]
        kind = str(n["kind"])
        sha = n.get("sha256")
        caption = KIND_LABEL.get(kind, kind)
        sub = f"sha256 {str(sha)[:16]}…" if sha else ""
        if n.get("detail") and (kind in ("dataset", "previous_run", "run") or kind not in KIND_LABEL):
            caption += f" · {n['detail']}"
        elif not sha:
            sub = str(n.get("detail") or "")
        out.append(
            f'<g class="node node-{esc(kind)} col-{int(n["column"])}"><title>{esc(caption)}: {esc(n["label"])}'
            f"{' sha256 ' + esc(sha) if sha else ''}</title>"
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{BOX_W}" height="{BOX_H}" rx="6"/>'
            f'<text x="{x + 8:.1f}" y="{y + 14:.1f}" class="node-kind">{esc(_short(caption, 34))}</text>'
            f'<text x="{x + 8:.1f}" y="{y + 29:.1f}" class="node-label">{esc(_short(str(n["label"]), 30))}</text>'
            f'<text x="{x + 8:.1f}" y="{y + 43:.1f}" class="node-digest">{esc(_short(sub, 34))}</text></g>'
        )
    out.append("</svg>")
    return "\n".join(out)


__all__ = ["chart_groups", "esc", "line_chart", "lineage_graph"]
