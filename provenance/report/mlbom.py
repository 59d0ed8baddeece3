"""A CycloneDX 1.6 ML-BOM of a run's model, built with ``cyclonedx-python-lib`` and validated by it.

The BOM's subject (``metadata.component``) is the trained model: a ``machine-learning-model``
component whose SHA-256 is the output directory's manifest digest (``sha256sum`` lines sorted by
name, as Bastion hashes directories), with every output file as a nested ``file`` component. The
base model (and a separate tokenizer) are ``machine-learning-model`` components, each data set a
``data`` component with its file SHA-256; the dependency graph says the model was made from them.
Roles, record counts, Merkle roots, the run id and the verification result are ``bastion:*``
properties. The library's JSON schema validator checks the result before it is returned.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bastion import __version__
from bastion.errors import BastionError
from bastion.extras import require

SCHEMA = "1.6"
_NAMESPACE = uuid.UUID("97d7e0a8-15ba-40b6-bb22-8595d8fb5559")  # the run-record predicate's UUID


class MLBOMError(BastionError):
    """The ML-BOM does not validate against the CycloneDX schema (a bug: the message has the details)."""


def build_mlbom(report: Mapping[str, Any]) -> str:
    """The CycloneDX JSON (schema 1.6) for a :func:`~bastion.provenance.report.build_report` dictionary."""
    require("report", feature="bastion report --mlbom")
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    from packageurl import PackageURL

    def sha(value: Any) -> list[HashType]:
        return [HashType(alg=HashAlgorithm.SHA_256, content=value)] if isinstance(value, str) and value else []

    def props(**values: Any) -> list[Property]:
        return [Property(name=f"bastion:{k}", value=str(v)) for k, v in values.items() if v is not None]

    def model_component(ref: str, m: Mapping[str, Any], role: str) -> Component:
        src = m.get("source") or {}
        purl = None
        if src.get("repo_id") and src.get("commit"):
            purl = PackageURL(type="huggingface", name=str(src["repo_id"]), version=str(src["commit"]))
        return Component(
            bom_ref=ref,
            type=ComponentType.MACHINE_LEARNING_MODEL,
            name=str(m["path_name"]),
            hashes=sha(m.get("sha256")),
            purl=purl,
            properties=props(role=role, digest="sha256 of the directory manifest", files=len(m.get("files") or [])),
        )

    run, outputs, verification = report["run"], report["outputs"], report["verification"]
    run_id = str(run["run_id"])
    serial = uuid.uuid5(_NAMESPACE, f"{run_id}:{outputs['sha256']}")
    model = Component(
        bom_ref=f"model:{outputs['sha256']}",
        type=ComponentType.MACHINE_LEARNING_MODEL,
        name=f"run-{run_id}",
        version=outputs["sha256"][:16] if outputs["sha256"] else None,
        description=f"model trained by run {run_id} ({run['framework'] or 'unknown framework'})",
        hashes=sha(outputs["sha256"]),
        properties=props(
            run_id=run_id,
            framework=run["framework"],
            predicate_type=run["predicate_type"],
            started_at=run["started_at"],
            finished_at=run["finished_at"],
            ledger_head=report["ledger"]["head"],
            verified=str(verification["ok"]).lower(),
            verification_failures=",".join(sorted({f["check"] for f in verification["failures"]})) or None,
            train_eval_overlap=report["overlap"]["train_eval_records"],
            digest="sha256 of the output manifest (sha256sum lines sorted by name)",
        ),
        components=[
            Component(bom_ref=f"file:{f['name']}", type=ComponentType.FILE, name=f["name"], hashes=sha(f["sha256"]))
            for f in outputs["files"]
        ],
    )
    bom = Bom(serial_number=serial)
    bom.metadata.component = model
    generated = report.get("generated_at")
    if isinstance(generated, str):
        bom.metadata.timestamp = datetime.fromisoformat(generated.replace("Z", "+00:00"))
    bom.metadata.tools.components.add(
        Component(type=ComponentType.APPLICATION, name="bastion", version=__version__, group="bastion-provenance")
    )
    made_from: list[Component] = []
    base = report.get("base_model")
    if base is not None:
        made_from.append(model_component(f"base-model:{base['sha256']}", base, "base_model"))
    tok = report.get("tokenizer")
    if tok is not None and (base is None or tok["sha256"] != base["sha256"]):
        made_from.append(model_component(f"tokenizer:{tok['sha256']}", tok, "tokenizer"))
    seen: set[str] = set()
    for d in report["datasets"]:
        ref = f"data:{d['sha256']}:{d['name']}"
        if ref in seen:
            continue
        seen.add(ref)
        split = d.get("split") or {}
        made_from.append(
            Component(
                bom_ref=ref,
                type=ComponentType.DATA,
                name=d["name"],
                hashes=sha(d["sha256"]),
                properties=props(
                    role=d["role"],
                    records=d["records"],
                    size=d["size"],
                    format=d["format"],
                    merkle_root=d["merkle_root"],
                    carved_from=(split.get("parent") or {}).get("sha256"),
                ),
            )
        )
    for c in made_from:
        bom.components.add(c)
    bom.register_dependency(model, made_from)
    text: str = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(indent=2)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise MLBOMError(f"the ML-BOM does not validate against CycloneDX {SCHEMA}: {error}")
    return text


__all__ = ["SCHEMA", "MLBOMError", "build_mlbom"]
