"""The inline SVG: long series stay drawable, every label is escaped."""

from __future__ import annotations

import re

from bastion.provenance.report.svg import MAX_PATH_POINTS, chart_groups, line_chart, lineage_graph


def test_a_long_run_is_drawn_from_a_sample_with_first_and_last_points() -> None:
    points = [[step, 10.0 / step] for step in range(1, 100_001)]
    svg = line_chart("loss", {"loss": points})
    d = re.search(r'<path d="([^"]+)"[^>]*class="series"', svg)
    assert d is not None
    assert d.group(1).count("L") == MAX_PATH_POINTS - 1
    assert "<circle" not in svg  # no markers over a dense line
    assert len(svg) < 200_000
    assert "1.00e+05" in svg  # the x axis reaches the last step


def test_few_points_get_markers_and_groups_put_losses_together() -> None:
    curves = {"loss": [[1, 2.0], [2, 1.0]], "eval_loss": [[2, 1.5]], "grad_norm": [[1, 0.1], [2, 0.2]], "x": [[1, 1]]}
    groups = dict(chart_groups(curves))
    assert set(groups) == {"loss", "grad_norm"} and set(groups["loss"]) == {"loss", "eval_loss"}
    svg = line_chart("loss", groups["loss"])
    assert svg.count("<circle") == 3


def test_labels_are_escaped() -> None:
    svg = line_chart('<b onclick="x">', {'"><script>': [[1, 1.0], [2, 2.0]]})
    assert "<script>" not in svg and "<b " not in svg and "&lt;script&gt;" in svg
    graph = lineage_graph(
        [{"id": "a", "kind": "run", "label": "<img src=x>", "sha256": None, "column": 2, "detail": "</text>"}], []
    )
    assert "<img" not in graph and "&lt;img src=x&gt;" in graph and "&lt;/text&gt;" in graph
