"""The HTML report in a real headless Chromium: it renders offline, logs no error, and the plots are drawn.

Chromium comes from the Debian ``chromium`` package (``.ci/run`` installs it). Without it the test is
skipped on a workstation but FAILS under CI (``CI=true`` or ``BASTION_REQUIRE_CHROMIUM=1``, which
``.ci/run`` sets), so CI never passes without running it.
Set ``BASTION_REPORT_SCREENSHOT`` to a file path to keep the full-page screenshot for a look.
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
from report_browser import find_chromium, render
from report_helpers import DemoRun

from bastion.provenance.report import TrustArgs, build_report, evidence_from_run_dir, render_html

PROBE = """(() => {
  const charts = [...document.querySelectorAll("svg.chart")].map(svg => ({
    title: svg.getAttribute("aria-label"),
    width: svg.getBoundingClientRect().width,
    series: [...svg.querySelectorAll("path.series")].map(p => ({
      name: p.dataset.series, d: p.getAttribute("d"), length: p.getTotalLength(),
      box: p.getBBox().width * p.getBBox().height,
    })),
    points: svg.querySelectorAll("circle").length,
  }));
  const lineage = document.querySelector("svg.lineage");
  return {
    title: document.title,
    verdict: document.getElementById("verdict").textContent,
    sections: [...document.querySelectorAll("main > section")].map(s => s.id),
    charts,
    lineageNodes: lineage ? lineage.querySelectorAll("g.node").length : 0,
    lineageEdges: lineage ? [...lineage.querySelectorAll("path.edge")].filter(p => p.getTotalLength() > 0).length : 0,
    scripts: document.scripts.length,
    resources: performance.getEntriesByType("resource").length,
  };
})()"""


@pytest.fixture(scope="session")
def chromium() -> str:
    found = find_chromium()
    if found is None:
        message = "headless Chromium is needed for the report's browser test (Debian: apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes") or os.environ.get("BASTION_REQUIRE_CHROMIUM"):
            pytest.fail(f"{message}; CI must run it, not skip it")
        pytest.skip(message)
    return found


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def _page(demo_run: DemoRun, run: Path, tmp_path: Path) -> tuple[dict[str, Any], Path]:
    content = build_report(evidence_from_run_dir(run, TrustArgs(public_keys=(demo_run.public_key,))))
    page = tmp_path / "report.html"
    page.write_text(render_html(content), encoding="utf-8")
    return content, page


def test_report_renders_in_chromium_with_plots_and_no_errors(chromium: str, demo_run: DemoRun, tmp_path: Path) -> None:
    content, page = _page(demo_run, demo_run.run, tmp_path)
    result = render(chromium, page, tmp_path / "profile", PROBE)
    assert result.errors == []
    probe = result.probe
    assert probe["title"] == f"Audit report: run {content['run']['run_id']}"
    assert probe["verdict"] == "VERIFIED: every check passed"
    assert probe["scripts"] == 0 and probe["resources"] == 0  # nothing loaded: it opens offline
    assert "training" in probe["sections"] and "compliance" in probe["sections"]
    charts = {c["title"]: c for c in probe["charts"]}
    loss = charts["loss"]
    assert loss["width"] > 300
    drawn = {s["name"]: s for s in loss["series"]}
    assert drawn["loss"]["d"].startswith("M") and drawn["loss"]["d"].count("L") == len(content["curves"]["loss"]) - 1
    assert drawn["loss"]["length"] > 100 and drawn["loss"]["box"] > 0
    assert loss["points"] == sum(len(v) for k, v in content["curves"].items() if k.endswith("loss"))
    assert "learning_rate" in charts and charts["learning_rate"]["series"][0]["length"] > 100
    assert probe["lineageNodes"] == len(content["lineage"]["nodes"])
    assert probe["lineageEdges"] == len(content["lineage"]["edges"])

    width, height = _png_size(result.png)
    assert width == 1280 and height > 3000  # the whole page, not just the first screen
    shot = tmp_path / "report.png"
    shot.write_bytes(result.png)
    keep = os.environ.get("BASTION_REPORT_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)


def test_tampered_report_renders_the_failure(chromium: str, demo_run: DemoRun, demo_copy: Path, tmp_path: Path) -> None:
    (demo_copy / "adapter_config.json").write_text("{}", encoding="utf-8")
    _content, page = _page(demo_run, demo_copy, tmp_path)
    result = render(chromium, page, tmp_path / "profile", PROBE)
    assert result.errors == []
    assert result.probe["verdict"] == "VERIFICATION FAILED: 1 check(s) failed"


def test_the_checker_sees_errors_and_the_page_blocks_external_loads(
    chromium: str, demo_run: DemoRun, tmp_path: Path
) -> None:
    """The same harness on a page that tries to load an image from elsewhere: the CSP refuses it, and
    the refusal is reported (so an empty error list above means something)."""
    _content, page = _page(demo_run, demo_run.run, tmp_path)
    text = page.read_text(encoding="utf-8").replace("</main>", '<img src="http://127.0.0.1:9/x.png"></main>')
    page.write_text(text, encoding="utf-8")
    result = render(chromium, page, tmp_path / "profile", "performance.getEntriesByType('resource').length")
    assert any("Content Security Policy" in e for e in result.errors), result.errors
