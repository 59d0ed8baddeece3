"""Where a run's evidence is for the EU AI Act items auditors ask about (Art. 10, Art. 12, Annex IV).

Each row paraphrases one item of Regulation (EU) 2024/1689, names the report sections (page anchors)
that hold the run record's evidence for it, and says how far the record goes: ``recorded`` (the
signed record holds it), ``partial`` (it holds part; the note says what is missing) or
``not in record`` (it needs evidence from outside a training run). This is a map to evidence, not a
conformity assessment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Item:
    ref: str
    requirement: str
    sections: tuple[str, ...]
    evidence: str


ITEMS: tuple[Item, ...] = (
    Item(
        "Art. 10(1)",
        "Training, validation and testing data sets meet the quality criteria of Art. 10(2)-(5).",
        ("datasets", "overlap"),
        "every data file with its role (train / eval / preference), SHA-256, record count and Merkle root",
    ),
    Item(
        "Art. 10(2)(b)",
        "Data collection processes and the origin of data.",
        ("datasets", "lineage"),
        "file digests and per-record Merkle roots; carved splits name their parent data set",
    ),
    Item(
        "Art. 10(2)(c)",
        "Relevant data-preparation operations (annotation, labelling, cleaning, updating, enrichment, aggregation).",
        ("datasets", "config"),
        "how eval splits were carved (method, seed, size) and the resolved training config; "
        "annotation and cleaning happen before training and are not in a run record",
    ),
    Item(
        "Art. 10(2)(f)-(g)",
        "Examination for possible biases and measures to detect, prevent and mitigate them.",
        (),
        "not in a training-run record: attach the bias examination to the model's technical documentation",
    ),
    Item(
        "Art. 10(3)",
        "Data sets relevant, sufficiently representative, as free of errors and complete as possible; "
        "appropriate statistical properties.",
        ("datasets", "overlap"),
        "record counts per role and the exact train/eval record overlap; representativeness needs a data sheet",
    ),
    Item(
        "Art. 10(5)",
        "Processing of special categories of personal data only where strictly necessary, with safeguards.",
        (),
        "not in a training-run record: the gateway's audit log and `bastion scan` reports hold the scans",
    ),
    Item(
        "Art. 12(1)",
        "Automatic recording of events (logs) over the system's lifetime.",
        ("ledger", "training"),
        "the hash-chained ledger: every logged step, checkpoint, warning and output, each entry timestamped",
    ),
    Item(
        "Art. 12(2)",
        "Logging that enables identifying risk situations, post-market monitoring and monitoring of operation.",
        ("ledger", "warnings", "verification"),
        "ledger warnings and the verification result; deployment-time monitoring logs are outside a training run",
    ),
    Item(
        "Annex IV 1(c)",
        "Versions of relevant software or firmware.",
        ("environment",),
        "Python, platform, accelerator and package versions of the training environment",
    ),
    Item(
        "Annex IV 2(a)",
        "Methods and steps performed for development, including use of pre-trained systems or third-party tools.",
        ("inputs", "lineage", "config"),
        "the base model and tokenizer with per-file digests (and Hub source), the framework and the config",
    ),
    Item(
        "Annex IV 2(b)",
        "Design specifications: general logic, key design choices and assumptions.",
        ("config",),
        "the resolved training config and training arguments (credentials withheld) and their digests",
    ),
    Item(
        "Annex IV 2(d)",
        "Data requirements: training data sets used, their provenance, scope and main characteristics; "
        "how data was obtained and selected.",
        ("datasets", "lineage"),
        "data set digests, sizes, formats, record counts and roles; selection criteria need a data sheet",
    ),
    Item(
        "Annex IV 2(g)",
        "Validation and testing procedures, data used and metrics; test logs and reports dated and signed.",
        ("datasets", "training", "metrics", "verification"),
        "eval data sets, logged eval metrics with their steps, and the signed, verified record",
    ),
    Item(
        "Annex IV 2(h)",
        "Cybersecurity measures put in place.",
        ("verification",),
        "the record's signature, per-file output digests and the OpenSSF model signature, verified",
    ),
    Item(
        "Annex IV 6",
        "Relevant changes made to the system through its lifecycle.",
        ("lineage",),
        "parent links the record holds (base model, carved data, earlier runs, merges and exports); "
        "runs across versions are linked by the registry (`bastion lineage`)",
    ),
)


def _status(item: Item, report: Mapping[str, Any]) -> str:
    if not item.sections:
        return "not in record"
    has = {
        "datasets": bool(report.get("datasets")),
        "overlap": bool((report.get("overlap") or {}).get("computed")),
        "lineage": bool((report.get("lineage") or {}).get("nodes")),
        "config": report.get("config") is not None,
        "ledger": bool((report.get("ledger") or {}).get("verified")),
        "training": bool(report.get("curves")),
        "warnings": True,
        "verification": bool((report.get("verification") or {}).get("ok")),
        "environment": bool(report.get("environment")),
        "inputs": report.get("base_model") is not None,
        "metrics": bool((report.get("metrics") or {}).get("final")),
    }
    present = [has.get(s, False) for s in item.sections]
    if not all(present):
        return "missing" if not any(present) else "partial"
    return "partial" if item.ref in {"Art. 10(2)(c)", "Art. 10(3)", "Art. 12(2)", "Annex IV 2(d)"} else "recorded"


def compliance_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per :data:`ITEMS` entry: reference, requirement, evidence, section anchors and status."""
    return [
        {
            "framework": "EU AI Act (Regulation (EU) 2024/1689)",
            "ref": item.ref,
            "requirement": item.requirement,
            "evidence": item.evidence,
            "sections": list(item.sections),
            "status": _status(item, report),
        }
        for item in ITEMS
    ]


__all__ = ["ITEMS", "compliance_rows"]
