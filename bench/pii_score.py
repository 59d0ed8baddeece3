"""Score detections against the labelled corpus of :mod:`pii_corpus`.

A labelled value counts as *found* when detections cover at least ``COVER`` (80 %) of its non-space
characters (a half-redacted name still leaks), and as *found typed* when detections of its own type do.
A detection is *correct* when at least half of its non-space characters lie inside labelled values (of any
type: a national id reported as a phone is still a correct catch, which typed recall reports separately).

Per type: recall, typed recall, precision (correct detections of that reported type / all of them);
overall: micro-averages, and the share of clean records (no labels) that any detection touched, i.e. that
redaction would have rewritten.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

COVER = 0.8
TYPES = [
    "PERSON_NAME", "STREET_ADDRESS", "DATE_OF_BIRTH", "EMAIL", "PHONE", "IBAN", "NATIONAL_ID", "PAYMENT_CARD",
    "IP_ADDRESS",
]  # fmt: skip

Detection = dict[str, Any]  # {"path", "start", "end", "entity"}


def _text_of(record: dict[str, Any], path: str) -> str:
    # paths are "messages[N].content"
    i = int(path.split("[", 1)[1].split("]", 1)[0])
    return str(record["messages"][i]["content"])


def _mask(text: str, spans: list[tuple[int, int]]) -> list[bool]:
    covered = [False] * len(text)
    for s, e in spans:
        for k in range(max(0, s), min(len(text), e)):
            covered[k] = True
    return covered


def score(rows: list[dict[str, Any]], detections: list[list[Detection]]) -> dict[str, Any]:
    """``rows``: corpus lines; ``detections``: per row, the detections of one detector set."""
    found: dict[str, int] = defaultdict(int)
    typed: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    reported: dict[str, int] = defaultdict(int)
    correct: dict[str, int] = defaultdict(int)
    clean = clean_touched = 0
    for row, dets in zip(rows, detections, strict=True):
        record = row["record"]
        if row["clean"]:
            clean += 1
            clean_touched += bool(dets)
        by_path: dict[str, list[Detection]] = defaultdict(list)
        for d in dets:
            by_path[d["path"]].append(d)
        labels_by_path: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for lab in row["labels"]:
            labels_by_path[lab["path"]].append(lab)
        for path in set(by_path) | set(labels_by_path):
            text = _text_of(record, path)
            ds = by_path.get(path, [])
            any_mask = _mask(text, [(d["start"], d["end"]) for d in ds])
            truth_mask = _mask(text, [(lab["start"], lab["end"]) for lab in labels_by_path.get(path, [])])
            for lab in labels_by_path.get(path, []):
                kind = lab["entity"]
                total[kind] += 1
                idx = [k for k in range(lab["start"], lab["end"]) if not text[k].isspace()]
                if not idx:
                    continue
                if sum(any_mask[k] for k in idx) >= COVER * len(idx):
                    found[kind] += 1
                own = _mask(text, [(d["start"], d["end"]) for d in ds if d["entity"] == kind])
                if sum(own[k] for k in idx) >= COVER * len(idx):
                    typed[kind] += 1
            for d in ds:
                kind = d["entity"]
                reported[kind] += 1
                idx = [k for k in range(d["start"], min(d["end"], len(text))) if not text[k].isspace()]
                if idx and sum(truth_mask[k] for k in idx) * 2 >= len(idx):
                    correct[kind] += 1
    per_type: dict[str, dict[str, Any]] = {}
    for kind in sorted(
        set(total) | set(reported), key=lambda k: (k not in TYPES, TYPES.index(k) if k in TYPES else 0, k)
    ):
        per_type[kind] = {
            "labels": total[kind],
            "recall": found[kind] / total[kind] if total[kind] else None,
            "typed_recall": typed[kind] / total[kind] if total[kind] else None,
            "reported": reported[kind],
            "precision": correct[kind] / reported[kind] if reported[kind] else None,
        }
    n_total = sum(total.values())
    n_reported = sum(reported.values())
    return {
        "per_type": per_type,
        "recall": sum(found.values()) / n_total if n_total else None,
        "typed_recall": sum(typed.values()) / n_total if n_total else None,
        "precision": sum(correct.values()) / n_reported if n_reported else None,
        "clean_records": clean,
        "clean_touched": clean_touched / clean if clean else None,
    }
