"""``bastion report --model DIGEST``: the report of the indexed run that produced an artifact.

The digest is resolved as ``bastion lineage model`` resolves it (an artifact's manifest digest, its
statement's SHA-256, or one of its files). The report is built from that run's directory, verified
against the trust material the registry pinned when the run was indexed (or the trust arguments given),
and its lineage graph gains the parents and derived artifacts the registry knows.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from pathlib import Path
from typing import Any

from bastion.errors import InputError
from bastion.provenance.registry import lineage as q
from bastion.provenance.registry.pinned import pinned_files
from bastion.provenance.registry.store import Registry, RegistryError, describe_location
from bastion.provenance.report.evidence import RunEvidence, TrustArgs, evidence_from_run_dir

_SUMMARY = ("record_id", "artifact_digest", "run_id", "kind", "verified", "path")


def _summary(art: dict[str, Any]) -> dict[str, Any]:
    return {k: art.get(k) for k in _SUMMARY}


def find_producer(reg: Registry, digest: str) -> dict[str, Any]:
    """The one indexed record that produced the artifact ``digest``; :class:`RegistryError` if none or several."""
    matches = q.resolve(reg, digest)
    if not matches:
        raise RegistryError(
            f"no indexed artifact has the digest {digest} in the run registry {describe_location(reg.where)}",
            hint="`bastion registry list` shows what is indexed; `bastion registry add RUN_DIR` indexes a run",
        )
    if len(matches) > 1:
        named = ", ".join(f"{m['run_id']} {m['kind']} ({m['artifact_digest'][:16]}…)" for m in matches[:5])
        raise RegistryError(
            f"the digest {digest[:16]}… names {len(matches)} indexed records: {named}",
            hint="give the artifact's manifest digest or its statement's SHA-256 (`bastion registry list`)",
        )
    return matches[0]


def registry_lineage(reg: Registry, art: dict[str, Any]) -> dict[str, Any]:
    """Ancestors (through base models, merges, resumed runs) and derived artifacts of ``art``, from the registry."""
    nodes, edges = q.ancestors(reg, [art])
    derived: list[dict[str, Any]] = []
    seen = {art["record_id"]}
    todo = [art]
    while todo:
        cur = todo.pop(0)
        for relation, child in q.children(reg, cur):
            if child["record_id"] in seen:
                continue
            seen.add(child["record_id"])
            derived.append({"artifact": _summary(child), "from": cur["record_id"], "relation": relation})
            todo.append(child)
    return {
        "registry": describe_location(reg.where),
        "record_id": art["record_id"],
        "artifact_digest": art["artifact_digest"],
        "ancestors": [_summary(a) for rid, a in nodes.items() if rid != art["record_id"]],
        "edges": edges,
        "derived": derived,
    }


def evidence_from_registry(reg: Registry, digest: str, trust: TrustArgs, *, now: datetime | None = None) -> RunEvidence:
    """The evidence of the run that produced ``digest``, read from its indexed directory.

    Without trust arguments (``trust.given`` false) the run is verified against the material pinned
    at indexing; a record indexed unverified has none, and the report then says it was not checked.
    """
    art = find_producer(reg, digest)
    root = Path(str(art["path"]))
    if not root.is_dir():
        raise InputError(
            f"the run directory indexed for {digest[:16]}… (run {art['run_id']}) is gone",
            path=root,
            hint="restore it from the archive, or point the registry at its new place with `bastion registry add`",
        )
    material = None if trust.given else reg.pinned_trust(str(art["record_id"]))
    if material is None:
        evidence = evidence_from_run_dir(root, trust, now=now)
    else:
        with pinned_files(material) as files:
            pinned = TrustArgs(
                public_keys=files.public_keys,
                certificate_chain=files.certificate_chain,
                identity=files.identity,
                issuer=files.issuer,
                trust_config=files.trust_config,
                policy=trust.policy,
                require_model_signature=files.require_model_signature,
                tsa_certificate_chain=files.tsa_certificate_chain,
                pinned=True,
            )
            evidence = evidence_from_run_dir(root, pinned, now=now)
    source = {
        "kind": "registry",
        "path": str(root),
        "registry": describe_location(reg.where),
        "record_id": art["record_id"],
        "artifact_digest": art["artifact_digest"],
        "query": digest,
    }
    return dataclasses.replace(evidence, source=source, registry_lineage=registry_lineage(reg, art))


__all__ = ["evidence_from_registry", "find_producer", "registry_lineage"]
