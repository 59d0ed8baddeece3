"""What an audit report is built from: one run's evidence, read from where it is kept.

:class:`RunEvidence` is the report builder's only input. :func:`evidence_from_run_dir` reads it from a
training output directory (its ``bastion/`` record) and runs the real verifier over the directory; a
registry entry (``bastion report --model DIGEST``) produces the same object from the indexed run's
directory, verified against the trust pinned at indexing, plus its lineage across runs
(:mod:`bastion.provenance.report.registry`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bastion.errors import LedgerError, LedgerVerificationError
from bastion.provenance.ledger import read_entries, verify_ledger
from bastion.provenance.predicate import PredicateError, RunPredicate
from bastion.provenance.signing.run import MODEL_SIGNATURE_NAME, STATEMENT_BUNDLE_NAME
from bastion.provenance.statement import RECORD_DIR, load_statement, locate_record
from bastion.provenance.verify import VerificationReport, verify


@dataclass(frozen=True)
class TrustArgs:
    """The trust material the verifier is given, exactly as ``bastion verify`` takes it."""

    public_keys: tuple[Path, ...] = ()
    certificate_chain: tuple[Path, ...] = ()
    identity: str | None = None
    issuer: str | None = None
    trust_config: Path | None = None
    policy: Path | None = None
    require_model_signature: bool = True
    tsa_certificate_chain: tuple[Path, ...] = ()
    pinned: bool = False
    """The material is what the registry pinned when the run was indexed (``bastion report --model``)."""

    def describe(self) -> dict[str, Any]:
        """What was trusted, by file name (never file contents), for the report."""
        return {
            "public_keys": [p.name for p in self.public_keys],
            "certificate_chain": [p.name for p in self.certificate_chain],
            "identity": self.identity,
            "issuer": self.issuer,
            "trust_config": None if self.trust_config is None else self.trust_config.name,
            "policy": None if self.policy is None else self.policy.name,
            "require_model_signature": self.require_model_signature,
            "tsa_certificate_chain": [p.name for p in self.tsa_certificate_chain],
            "pinned_by_registry": self.pinned,
        }

    @property
    def given(self) -> bool:
        return bool(self.public_keys or self.certificate_chain or self.identity)


@dataclass(frozen=True)
class LedgerEvidence:
    """The ledger as read for the report: its entries (up to the first unreadable line) and whether it verifies."""

    path: str
    entries: Sequence[Mapping[str, Any]]
    verified: bool
    problem: str | None = None
    problem_line: int | None = None


@dataclass(frozen=True)
class RunEvidence:
    """Everything a report shows about one run, independent of where it was read from."""

    source: Mapping[str, Any]
    """``{"kind": "run_dir", "path": ...}`` (later ``{"kind": "registry", ...}``)."""
    statement: Mapping[str, Any]
    predicate: RunPredicate | None
    predicate_problem: str | None
    ledger: LedgerEvidence
    verification: VerificationReport
    trust: TrustArgs
    signature_files: Mapping[str, bool] = field(default_factory=dict)
    verified_at: datetime | None = None
    registry_lineage: Mapping[str, Any] | None = None
    """Parents and derived artifacts across runs, from the registry (``ancestors``, ``edges``, ``derived``)."""


def read_ledger(root: Path, pred: RunPredicate | None) -> LedgerEvidence:
    """The run's ledger entries and whether the chain ends at the head the statement records."""
    rel = pred.ledger.path if pred is not None else f"{RECORD_DIR}/ledger.jsonl"
    head = pred.ledger.head if pred is not None else None
    count = pred.ledger.entries if pred is not None else None
    path = root / rel
    if Path(rel).is_absolute() or not path.resolve().is_relative_to(root.resolve()):
        return LedgerEvidence(rel, (), False, "the statement's ledger path points outside the run directory")
    entries: list[Mapping[str, Any]] = []
    problem: str | None = None
    line: int | None = None
    try:
        for _lineno, entry in read_entries(path):
            entries.append(entry)
    except LedgerVerificationError as exc:
        problem, line = exc.message.replace(str(path), rel), exc.line
    except LedgerError as exc:
        problem = exc.message.replace(str(path), rel)
    if problem is None:
        if head is None:
            problem = "the statement records no ledger head"
        else:
            try:
                verify_ledger(path, expected_head=head, expected_entries=count)
            except LedgerVerificationError as exc:
                problem, line = exc.message.replace(str(path), rel), exc.line
            except LedgerError as exc:
                problem = exc.message.replace(str(path), rel)
    if count is not None and len(entries) > count:
        entries = entries[:count]  # a longer ledger continues the chain past what this statement covers
    return LedgerEvidence(rel, tuple(entries), problem is None, problem, line)


def evidence_from_run_dir(run_dir: Path, trust: TrustArgs, *, now: datetime | None = None) -> RunEvidence:
    """Read a run directory's record and verify it with ``trust`` (the same checks as ``bastion verify``).

    Raises :class:`bastion.errors.InputError` when ``run_dir`` holds no run record and for unusable
    trust arguments (a missing key file); a record that fails verification is evidence, not an error.
    """
    root, _statement = locate_record(run_dir)
    record = root / RECORD_DIR
    now = now or datetime.now(UTC)
    on_disk = load_statement(record / "statement.json")  # the clear error for a missing or unreadable one
    report = verify(
        root,
        public_key=list(trust.public_keys) or None,
        certificate_chain=list(trust.certificate_chain) or None,
        identity=trust.identity,
        issuer=trust.issuer,
        trust_config=trust.trust_config,
        policy=trust.policy,
        require_model_signature=trust.require_model_signature,
        tsa_certificate_chain=list(trust.tsa_certificate_chain) or None,
        now=now,
    )
    # The verifier's statement is the signed payload when the signature holds (an edited statement.json
    # on disk is then not what the page shows), else the file on disk, for diagnosis.
    statement = report.statement if report.statement is not None else on_disk
    try:
        pred: RunPredicate | None = RunPredicate.parse(statement.get("predicate"))
        problem = None
    except PredicateError as exc:
        pred, problem = None, exc.message
    return RunEvidence(
        source={"kind": "run_dir", "path": str(root)},
        statement=statement,
        predicate=pred,
        predicate_problem=problem,
        ledger=read_ledger(root, pred),
        verification=report,
        trust=trust,
        signature_files={
            STATEMENT_BUNDLE_NAME: (record / STATEMENT_BUNDLE_NAME).is_file(),
            MODEL_SIGNATURE_NAME: (record / MODEL_SIGNATURE_NAME).is_file(),
        },
        verified_at=now,
    )


__all__ = ["LedgerEvidence", "RunEvidence", "TrustArgs", "evidence_from_run_dir", "read_ledger"]
