"""Audit export of a run: one self-contained HTML page, the same content as JSON, and a CycloneDX ML-BOM.

```python
from pathlib import Path
from bastion.provenance.report import TrustArgs, build_report, evidence_from_run_dir, render_html
evidence = evidence_from_run_dir(Path("out"), TrustArgs(public_keys=(Path("keys/signing.pub"),)))
report = build_report(evidence)             # JSON-ready dict, format bastion-audit-report/v1
Path("report.html").write_text(render_html(report), encoding="utf-8")
```

The builder takes a :class:`RunEvidence`; :func:`evidence_from_run_dir` reads one from an output
directory (and runs the real verifier). A registry entry will produce the same object.
"""

from __future__ import annotations

from bastion.provenance.report.builder import REPORT_FORMAT, SECTIONS, build_report
from bastion.provenance.report.evidence import LedgerEvidence, RunEvidence, TrustArgs, evidence_from_run_dir
from bastion.provenance.report.html import render_html
from bastion.provenance.report.mlbom import build_mlbom

__all__ = [
    "REPORT_FORMAT",
    "SECTIONS",
    "LedgerEvidence",
    "RunEvidence",
    "TrustArgs",
    "build_mlbom",
    "build_report",
    "evidence_from_run_dir",
    "render_html",
]
