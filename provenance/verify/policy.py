"""Deploy policy: which signed runs may be deployed.

```yaml
# deploy-policy.yaml
allowed_signers:                      # any one must match the verified signer
  - key: "sha256:1bdc8d7d..."         # key fingerprint, as printed by `bastion keygen`
  - certificate: {san: "ml-release@acme.example", issuer: "CN=Acme Signing CA"}
  - sigstore: {identity: "ci@acme.example", issuer: "https://accounts.acme.example"}
allowed_base_models:                  # base_model.digest.sha256 in the statement
  - sha256: "9f2c..."
    name: "tiny-llama (informational)"
datasets:
  required: [{sha256: "ab12..."}]     # each must be among the run's datasets
  forbidden: [{sha256: "66cd..."}]    # none may be
train_eval_overlap: none              # none: the statement must record 0 shared train/eval records
near_duplicates:                      # the run's MinHash/LSH near-duplicate check (trainer: near_duplicates:)
  max_share: 0.01                     # at most 1% of eval records may have a near-duplicate in train
  max_threshold: 0.8                  # optional: the check must have used a Jaccard threshold <= 0.8
max_age: 30d                          # run finished at most this long ago (s, m, h, d, w)
lineage_contamination: none           # no eval record of the run in the training data of any ancestor
                                      # (checked in the run registry: `bastion verify --registry DB`)
```
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bastion.errors import ConfigError
from bastion.provenance.predicate import NearDuplicateOverlap, PredicateError, RunPredicate
from bastion.safe_yaml import YamlProblem, load_yaml

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _digest(v: Any) -> Any:
    if isinstance(v, str):
        s = v.strip().lower()
        s = s.removeprefix("sha256:")
        if not _HEX64.match(s):
            raise ValueError("must be a SHA-256 digest: 64 hex characters (optionally prefixed 'sha256:')")
        return s
    return v


def _shown(value: Any, limit: int = 80) -> str:
    """A bad value as an error shows it: whole up to ``limit`` characters, else its start and its length."""
    text = str(value)
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CertificateIdentity(_Strict):
    subject: str | None = None
    common_name: str | None = None
    san: str | None = None
    issuer: str | None = None
    fingerprint: str | None = None

    @model_validator(mode="after")
    def _something(self) -> CertificateIdentity:
        if not any((self.subject, self.common_name, self.san, self.issuer, self.fingerprint)):
            raise ValueError("give at least one of subject, common_name, san, issuer, fingerprint")
        return self

    def matches(self, ident: dict[str, Any]) -> bool:
        if ident.get("type") != "certificate":
            return False
        checks = [
            self.subject is None or self.subject == ident.get("subject"),
            self.common_name is None or self.common_name == ident.get("common_name"),
            self.san is None or self.san in (ident.get("san") or []),
            self.issuer is None or self.issuer == ident.get("issuer"),
            self.fingerprint is None
            or "sha256:" + str(_digest(self.fingerprint)) == str(ident.get("fingerprint", "")).lower(),
        ]
        return all(checks)


class SigstoreIdentity(_Strict):
    identity: str
    issuer: str

    def matches(self, ident: dict[str, Any]) -> bool:
        return (
            ident.get("type") == "sigstore"
            and ident.get("identity") == self.identity
            and (ident.get("issuer") == self.issuer)
        )


class SignerRule(_Strict):
    key: str | None = None
    certificate: CertificateIdentity | None = None
    sigstore: SigstoreIdentity | None = None

    @field_validator("key", mode="before")
    @classmethod
    def _key(cls, v: Any) -> Any:
        d = _digest(v)
        return f"sha256:{d}" if isinstance(d, str) else d

    @model_validator(mode="after")
    def _exactly_one(self) -> SignerRule:
        if sum(x is not None for x in (self.key, self.certificate, self.sigstore)) != 1:
            raise ValueError("each entry needs exactly one of key, certificate, sigstore")
        return self

    def matches(self, ident: dict[str, Any]) -> bool:
        if self.key is not None:
            return ident.get("type") == "key" and ident.get("fingerprint") == self.key
        if self.certificate is not None:
            return self.certificate.matches(ident)
        assert self.sigstore is not None
        return self.sigstore.matches(ident)

    def describe(self) -> str:
        if self.key is not None:
            return f"key {self.key}"
        if self.certificate is not None:
            parts = self.certificate.model_dump(exclude_none=True)
            return "certificate " + ", ".join(f"{k}={v}" for k, v in parts.items())
        assert self.sigstore is not None
        return f"sigstore {self.sigstore.identity} ({self.sigstore.issuer})"


class DigestRef(_Strict):
    sha256: str
    name: str | None = None
    role: Literal["train", "eval", "preference"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, v: Any) -> Any:
        return {"sha256": v} if isinstance(v, str) else v

    @field_validator("sha256", mode="before")
    @classmethod
    def _hex(cls, v: Any) -> Any:
        return _digest(v)

    def label(self) -> str:
        return f"{self.name} ({self.sha256[:12]}…)" if self.name else f"sha256:{self.sha256[:12]}…"


class DatasetRules(_Strict):
    required: list[DigestRef] = Field(default_factory=list)
    forbidden: list[DigestRef] = Field(default_factory=list)


class NearDuplicateRule(_Strict):
    """``near_duplicates:``: how many eval records may have a near-duplicate in the training data."""

    max_share: float = Field(ge=0, le=1)
    max_threshold: float | None = Field(default=None, gt=0, le=1)

    @field_validator("max_share", "max_threshold", mode="before")
    @classmethod
    def _number(cls, v: Any) -> Any:
        if isinstance(v, bool) or (v is not None and not isinstance(v, int | float)):
            raise ValueError("must be a number between 0 and 1 (a fraction, e.g. 0.01 for 1%)")
        return v

    def evaluate(self, near: NearDuplicateOverlap | None) -> tuple[str, str, str | None, str | None] | None:
        if near is None:
            return (
                "policy.near_duplicates",
                "the near-duplicate train/eval overlap was not computed; enable it in the trainer's bastion "
                "settings (near_duplicates: {threshold: 0.8}) and give the run eval data with per-record digests",
                f"at most {self.max_share:.2%} of eval records near-duplicated",
                "not computed",
            )
        if self.max_threshold is not None and near.threshold > self.max_threshold:
            return (
                "policy.near_duplicates",
                "the near-duplicate check used a looser similarity threshold than the policy allows",
                f"threshold <= {self.max_threshold:g}",
                f"threshold {near.threshold:g}",
            )
        if near.share > self.max_share:
            return (
                "policy.near_duplicates",
                "too many eval records have a near-duplicate in the training data",
                f"at most {self.max_share:.2%} of eval records",
                f"{near.eval_records} of {near.eval_total} ({near.share:.2%}) at Jaccard >= {near.threshold:g}",
            )
        return None


class DeployPolicy(_Strict):
    """A validated deploy policy (see the module docs for the file format)."""

    version: Literal[1] = 1
    allowed_signers: list[SignerRule] | None = None
    allowed_base_models: list[DigestRef] | None = None
    datasets: DatasetRules = Field(default_factory=DatasetRules)
    train_eval_overlap: Literal["none", "any"] = "any"
    near_duplicates: NearDuplicateRule | None = None
    max_age: timedelta | None = None
    lineage_contamination: Literal["none", "any"] = "any"
    """``none``: checked by :mod:`bastion.provenance.verify.lineage_rule` against the run registry."""

    @field_validator("max_age", mode="before")
    @classmethod
    def _age(cls, v: Any) -> Any:
        if v is None or isinstance(v, timedelta):
            return v
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise ValueError("give a unit, e.g. '30d', '12h', '90m'")
        m = _AGE.match(str(v))
        if not m:
            raise ValueError(f"{_shown(v)} is not a duration; use a number and a unit s, m, h, d or w, e.g. '30d'")
        try:
            return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
        except OverflowError:
            raise ValueError(f"{_shown(v)} is too long a duration; the longest is {timedelta.max.days}d") from None

    def evaluate(
        self, statement: dict[str, Any], identity: dict[str, Any] | None, now: datetime
    ) -> list[tuple[str, str, str | None, str | None]]:
        """(check, message, expected, found) for every rule the run breaks."""
        out: list[tuple[str, str, str | None, str | None]] = []
        if self.allowed_signers is not None and (
            identity is None or not any(r.matches(identity) for r in self.allowed_signers)
        ):
            out.append(
                (
                    "policy.signer",
                    "signer is not allowed by the policy",
                    " | ".join(r.describe() for r in self.allowed_signers) or "(no signer allowed)",
                    _describe_identity(identity),
                )
            )
        try:
            pred = RunPredicate.parse(statement.get("predicate"))
        except PredicateError as exc:
            out.append(("policy.predicate", f"no rule can be checked: {exc.message}", "a v1 run predicate", None))
            return out
        if self.allowed_base_models is not None:
            base = pred.base_model
            found = base.sha256.lower() if base is not None and base.sha256 else None
            allowed = {r.sha256 for r in self.allowed_base_models}
            if found not in allowed:
                out.append(
                    (
                        "policy.base_model",
                        "base model is not allowed",
                        " | ".join(r.label() for r in self.allowed_base_models),
                        f"sha256:{found}" if found else "no base model recorded",
                    )
                )
        datasets = pred.datasets
        present: set[tuple[str | None, str]] = {(d.sha256.lower(), d.role) for d in datasets}
        # A side of a carved split also stands for its parent file in that role (the file was used so).
        present |= {(_sha(d.split.get("parent")), d.role) for d in datasets if d.split is not None}
        digests = {sha for sha, _ in present}
        for ref in self.datasets.required:
            ok = (ref.sha256, ref.role) in present if ref.role else ref.sha256 in digests
            if not ok:
                out.append(
                    (
                        "policy.datasets.required",
                        f"required dataset {ref.label()} was not used" + (f" as {ref.role}" if ref.role else ""),
                        f"sha256:{ref.sha256}",
                        ", ".join(f"{d.name}=sha256:{d.sha256}" for d in datasets) or "no datasets recorded",
                    )
                )
        for ref in self.datasets.forbidden:
            hits = [
                d
                for d in datasets
                if ref.sha256 in (d.sha256.lower(), _sha(d.split.get("parent")) if d.split is not None else None)
            ]
            if hits:
                out.append(
                    (
                        "policy.datasets.forbidden",
                        f"forbidden dataset {ref.label()} was used",
                        "not used",
                        ", ".join(f"{d.name} ({d.role})" for d in hits),
                    )
                )
        if self.train_eval_overlap == "none":
            n = pred.overlap
            if n != 0:
                out.append(
                    (
                        "policy.overlap",
                        "train/eval overlap must be none"
                        + ("; it was not computed (no eval dataset recorded)" if n is None else ""),
                        "0 shared records",
                        "not computed" if n is None else f"{n} shared records",
                    )
                )
        if self.near_duplicates is not None:
            broken = self.near_duplicates.evaluate(pred.near_duplicate)
            if broken is not None:
                out.append(broken)
        if self.max_age is not None:
            finished = _parse_time(pred.finished_at)
            if finished is None:
                out.append(("policy.max_age", "statement records no valid finished_at", f"<= {self.max_age}", None))
            elif now - finished > self.max_age:
                out.append(
                    (
                        "policy.max_age",
                        "run is older than allowed",
                        f"finished after {(now - self.max_age).isoformat()}",
                        f"finished at {finished.isoformat()} ({now - finished} ago)",
                    )
                )
        return out


def _sha(value: Any) -> str | None:
    if isinstance(value, dict):
        d = value.get("digest")
        if isinstance(d, dict) and isinstance(d.get("sha256"), str):
            return str(d["sha256"]).lower()
    return None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return t


def _describe_identity(identity: dict[str, Any] | None) -> str:
    if not identity:
        return "unknown signer"
    kind = identity.get("type")
    if kind == "key":
        return f"key {identity.get('fingerprint')}"
    if kind == "certificate":
        san = ", ".join(identity.get("san") or [])
        return (
            f"certificate {identity.get('subject')}"
            + (f" san={san}" if san else "")
            + (f" issuer={identity.get('issuer')}")
        )
    return f"sigstore {identity.get('identity')} ({identity.get('issuer')})"


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the YAML node at ``loc`` (deepest node found)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if nxt is None:
                break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
        line = node.start_mark.line + 1
    return line


def parse_policy(text: str, *, source: str = "deploy policy") -> DeployPolicy:
    """Validate policy YAML; errors name the file, the line and the key path."""
    try:
        data, root = load_yaml(text)
    except YamlProblem as exc:
        raise ConfigError(
            f"{source}:{exc.line}: not valid YAML: {exc.problem}",
            hint="fix the YAML syntax (indentation, quotes, colons); see `bastion verify --help` for the format",
        ) from None
    if data is None or data == {}:
        raise ConfigError(
            f"{source}:1: the deploy policy is empty, so it would allow any signed run",
            hint="state the rules it enforces (allowed_signers, allowed_base_models, datasets, max_age...)",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}:1: a deploy policy must be a mapping (keys such as allowed_signers, max_age),"
            f" got {type(data).__name__}"
        )
    try:
        return DeployPolicy.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
            if not key.isprintable():  # a key with a line break or control character: one line, escaped
                key = key.encode("unicode_escape").decode("ascii")
            line = _line_of(root, loc)
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            where = f"{source}:{line}" if line else source
            lines.append(f"{where}: {key or '(top level)'}: {msg}")
        raise ConfigError("\n".join(lines), hint="see `bastion verify --help` for the policy format") from None


def load_policy(path: str | os.PathLike[str]) -> DeployPolicy:
    """Read and validate a deploy policy YAML file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: deploy policy not found") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read the deploy policy ({exc.strerror or exc})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{p}:{line}: the deploy policy is not valid UTF-8") from None
    return parse_policy(text, source=str(p))
