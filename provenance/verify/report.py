"""The result of verifying an artifact."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Failure:
    """One failed check: ``check`` is a stable id (e.g. ``subject.modified``), the rest is for people."""

    check: str
    message: str
    expected: str | None = None
    found: str | None = None

    def line(self) -> str:
        text = f"{self.check}: {self.message}"
        if self.expected is not None or self.found is not None:
            text += f" (expected {self.expected if self.expected is not None else '-'}, "
            text += f"found {self.found if self.found is not None else '-'})"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "message": self.message, "expected": self.expected, "found": self.found}

    def __iter__(self):  # type: ignore[no-untyped-def]
        """Unpacks as the (check, expected, found) triple of the public contract."""
        return iter((self.check, self.expected, self.found))


@dataclass
class VerificationReport:
    """Outcome of :func:`bastion.provenance.verify.verify`; ``ok`` only when every check passed."""

    artifact: Path
    failures: list[Failure] = field(default_factory=list)
    passed: list[str] = field(default_factory=list)
    signer: dict[str, Any] | None = None
    statement: dict[str, Any] | None = None
    files: int = 0
    timestamps: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per bundle (``bastion/statement.sigstore.json``...): the signing time an RFC 3161 token proved."""
    trust: dict[str, Any] = field(default_factory=dict)
    """What the verification trusted (:func:`bastion.provenance.verify.trust.trust_material`)."""
    trust_used: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per bundle: the key fingerprint, or the certificate chain (leaf to root), that verified it."""

    @property
    def ok(self) -> bool:
        return not self.failures

    def fail(self, check: str, message: str, expected: str | None = None, found: str | None = None) -> None:
        self.failures.append(Failure(check, message, expected, found))

    def lines(self) -> list[str]:
        return [f.line() for f in self.failures]

    def reasons(self) -> set[str]:
        """The set of failed check ids (handy in tests and pipelines)."""
        return {f.check for f in self.failures}

    def as_dict(self) -> dict[str, Any]:
        pred = (self.statement or {}).get("predicate") or {}
        return {
            "artifact": str(self.artifact),
            "ok": self.ok,
            "failures": [f.as_dict() for f in self.failures],
            "passed": list(self.passed),
            "signer": self.signer,
            "files": self.files,
            "timestamps": self.timestamps,
            "trust_used": self.trust_used,
            "trust": {k: _without_pem(v) for k, v in self.trust.items()},
            "run_id": pred.get("run_id") if isinstance(pred, dict) else None,
        }


def _without_pem(value: Any) -> Any:
    """Trust material for JSON reports: fingerprints and subjects, not the PEM bodies."""
    if isinstance(value, list):
        return [{k: v for k, v in item.items() if k != "pem"} if isinstance(item, dict) else item for item in value]
    return value
