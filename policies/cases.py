"""Policy test cases (``bastion policy test``): sample records -> expected decisions.

A cases file is YAML (a list, or a mapping with ``cases:``) or JSONL (one case per line)::

    cases:
      - name: an email is redacted
        record: {"messages": [{"role": "user", "content": "write to ana@example.eu"}]}
        expect:
          decision: redact                      # allow | redact | block
          entities: [EMAIL]                     # optional: the entity types found (as a set)
          redacted: {"messages": [{"role": "user", "content": "write to [EMAIL]"}]}   # optional
      - name: shorthand for a single string
        text: "call +49 30 901820"              # same as record: {"text": "..."}
        expect: {decision: redact, redacted_text: "call [PHONE]"}
      - name: personal data stays out of the US
        residency: {upstream: openai, classification: personal}
        expect: {allowed: false}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bastion.errors import InputError
from bastion.policies.engine import PolicyEngine
from bastion.policies.loader import format_loc, line_of


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Expectation(_Strict):
    decision: Literal["allow", "redact", "block"] | None = None
    entities: list[str] | None = None
    redacted: Any = None
    redacted_text: str | None = None
    allowed: bool | None = None
    rule_id: str | None = None


class ResidencyQuery(_Strict):
    upstream: str
    jurisdiction: str | None = None
    classification: str | None = None


class Case(_Strict):
    name: str = Field(min_length=1)
    record: Any = None
    text: str | None = None
    residency: ResidencyQuery | None = None
    expect: Expectation

    @model_validator(mode="after")
    def _one_subject(self) -> Case:
        given = [k for k in ("record", "text", "residency") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("a case needs exactly one of 'record', 'text' or 'residency'")
        if self.residency is not None and self.expect.allowed is None:
            raise ValueError("a residency case needs expect.allowed")
        if self.residency is None and self.expect.decision is None:
            raise ValueError("a record case needs expect.decision")
        return self


@dataclass
class CaseResult:
    name: str
    passed: bool
    problems: list[str]
    line: int | None = None


def load_cases(path: str | Path) -> list[tuple[Case, int | None]]:
    """Parse and validate a cases file; InputError names file, line and the problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("cases file not found", path=p) from None
    except UnicodeDecodeError:
        raise InputError("cases file is not valid UTF-8", path=p) from None
    except OSError as exc:
        raise InputError(f"cannot read cases file: {exc.strerror}", path=p) from None
    items: list[tuple[Any, int | None, Any]] = []  # (data, line, yaml node)
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        for no, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                items.append((json.loads(raw), no, None))
            except json.JSONDecodeError as exc:
                raise InputError(f"case is not valid JSON: {exc.msg} (column {exc.colno})", path=p, line=no) from None
    else:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise InputError(
                f"not valid YAML: {getattr(exc, 'problem', None) or exc}",
                path=p,
                line=None if mark is None else mark.line + 1,
            ) from None
        seq_node = node
        if isinstance(data, dict) and "cases" in data:
            data = data["cases"]
            if isinstance(node, yaml.MappingNode):
                seq_node = next((v for k, v in node.value if k.value == "cases"), None)
        if not isinstance(data, list):
            raise InputError("expected a list of cases (or a mapping with 'cases:')", path=p, line=1)
        for i, item in enumerate(data):
            sub = seq_node.value[i] if isinstance(seq_node, yaml.SequenceNode) else None
            items.append((item, None if sub is None else sub.start_mark.line + 1, sub))
    if not items:
        raise InputError("no cases in the file", path=p)
    cases: list[tuple[Case, int | None]] = []
    for i, (data, line, sub) in enumerate(items):
        try:
            cases.append((Case.model_validate(data), line))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            loc = tuple(err["loc"])
            where = line_of(sub, loc) if sub is not None else line
            msg = str(err["msg"]).removeprefix("Value error, ")
            raise InputError(f"case {i + 1}: {format_loc(loc) if loc else 'case'}: {msg}", path=p, line=where) from None
    return cases


def run_case(engine: PolicyEngine, case: Case, line: int | None = None) -> CaseResult:
    problems: list[str] = []
    exp = case.expect
    if case.residency is not None:
        q = case.residency
        res = engine.check_residency(q.upstream, q.jurisdiction, q.classification)
        if res.allowed != exp.allowed:
            problems.append(f"expected allowed={exp.allowed}, got allowed={res.allowed} ({res.reason})")
        if exp.rule_id is not None and res.rule_id != exp.rule_id:
            problems.append(f"expected rule {exp.rule_id!r}, got {res.rule_id!r}")
        return CaseResult(case.name, not problems, problems, line)
    record = case.record if case.text is None else {"text": case.text}
    scan = engine.scan_record(record, 1)
    if scan.action != exp.decision:
        problems.append(f"expected decision {exp.decision}, got {scan.action}")
    found = sorted({f.entity for f in scan.findings})
    if exp.entities is not None and sorted(set(exp.entities)) != found:
        problems.append(f"expected entities {sorted(set(exp.entities))}, got {found}")
    if exp.rule_id is not None and exp.rule_id not in {f.rule_id for f in scan.findings}:
        problems.append(f"expected a finding of rule {exp.rule_id!r}")
    if exp.redacted is not None and scan.record != exp.redacted:
        problems.append("redacted record differs: got " + json.dumps(scan.record, ensure_ascii=False)[:300])
    if exp.redacted_text is not None:
        got = scan.record.get("text") if isinstance(scan.record, dict) else None
        if got != exp.redacted_text:
            problems.append(f"expected redacted text {exp.redacted_text!r}, got {got!r}")
    return CaseResult(case.name, not problems, problems, line)
