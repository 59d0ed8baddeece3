"""The deploy-policy rule ``lineage_contamination: none``, checked in the run registry.

A model's eval records must not appear in the training data of any of its ancestors (the runs and
merges that produced its base model, through the lineage the registry indexes): otherwise its eval
numbers measure memorisation. The check is :func:`bastion.provenance.registry.lineage.contamination`
over the run's record, found in the registry by the manifest digest of its signed subjects. It fails
closed: a run not indexed, or eval/ancestor training data whose record digests are not indexed,
fails the rule with what to do.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

CHECK = "policy.lineage_contamination"
Finding = tuple[str, str, str | None, str | None]


def check_lineage_contamination(statement: Mapping[str, Any], registry: str | os.PathLike[str] | None) -> list[Finding]:
    """(check, message, expected, found) for each way the run breaks the rule; raises ``RegistryError``
    only for an unusable registry (an argument problem)."""
    expected = "no eval record in the training data of an ancestor"
    if registry is None:
        return [
            (
                CHECK,
                "the policy forbids contamination through the lineage, which is checked in the run registry: "
                "pass --registry DB (the registry where this run and its ancestors are indexed)",
                expected,
                "no registry given",
            )
        ]
    from bastion.provenance.registry import lineage, open_registry
    from bastion.provenance.registry.ingest import manifest_digest

    subjects = [
        (str(s["name"]), str(s["digest"]["sha256"]).lower())
        for s in statement.get("subject") or []
        if isinstance(s, Mapping) and isinstance(s.get("digest"), Mapping)
    ]
    digest = manifest_digest(subjects)
    with open_registry(registry) as reg:
        answer = lineage.contamination(reg, digest)
        where = reg.where
    if not answer["matches"]:
        return [
            (
                CHECK,
                f"this run is not indexed in the run registry {where}, so its lineage cannot be checked: "
                "`bastion registry add` it and its ancestors (with --data for their datasets)",
                expected,
                f"artifact {digest[:16]}… not indexed",
            )
        ]
    out: list[Finding] = []
    bad = answer["contaminated_records"]
    if bad:
        runs = sorted({f"{f['ancestor']['run_id']} ({f['train_dataset']['name']})" for f in answer["findings"]})
        out.append(
            (
                CHECK,
                f"{len(bad)} eval record(s) of this run are in the training data of its ancestor(s) "
                f"{', '.join(runs)}; `bastion lineage contamination {digest}` lists them with proofs",
                expected,
                f"{len(bad)} record(s), e.g. {bad[0][:16]}…",
            )
        )
    missing = answer["not_checked"]
    if missing:
        named = ", ".join(f"{m['role']} {m['name']} ({m['sha256'][:16]}…)" for m in missing[:5])
        out.append(
            (
                CHECK,
                f"{len(missing)} dataset(s) of this run or its ancestors have no indexed record digests, so "
                f"contamination cannot be ruled out: {named}; index them with `bastion registry add-data FILE`",
                expected,
                "not checked",
            )
        )
    return out


__all__ = ["CHECK", "check_lineage_contamination"]
