"""The CycloneDX ML-BOM of a real signed run: valid CycloneDX 1.6, hashes that are the run's digests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from report_helpers import DemoRun

from bastion.provenance.report import TrustArgs, build_mlbom, build_report, evidence_from_run_dir
from bastion.provenance.statement import load_statement


def _sha256(bom_component: dict[str, object]) -> str:
    hashes = bom_component["hashes"]
    assert isinstance(hashes, list) and len(hashes) == 1 and hashes[0]["alg"] == "SHA-256"
    return str(hashes[0]["content"])


def test_mlbom_of_a_signed_run_validates_and_names_its_inputs(demo_run: DemoRun) -> None:
    content = build_report(evidence_from_run_dir(demo_run.run, TrustArgs(public_keys=(demo_run.public_key,))))
    text = build_mlbom(content)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"

    statement = load_statement(demo_run.run / "bastion" / "statement.json")
    pred = statement["predicate"]
    model = bom["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    # The model's hash is the output manifest digest, recomputable with sha256sum from the subjects.
    manifest = "".join(
        f"{s['digest']['sha256']}  {s['name']}\n" for s in sorted(statement["subject"], key=lambda s: s["name"])
    )
    assert _sha256(model) == hashlib.sha256(manifest.encode()).hexdigest()
    files = {c["name"]: _sha256(c) for c in model["components"]}
    assert files == {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    props = {p["name"]: p["value"] for p in model["properties"]}
    assert props["bastion:run_id"] == pred["run_id"] and props["bastion:verified"] == "true"
    assert props["bastion:ledger_head"] == pred["ledger"]["head"]

    components = {c["bom-ref"]: c for c in bom["components"]}
    base = next(c for c in components.values() if c["type"] == "machine-learning-model")
    assert _sha256(base) == pred["base_model"]["digest"]["sha256"] and base["name"] == "tiny-llama"
    data = [c for c in components.values() if c["type"] == "data"]
    assert len(data) == 2
    for c in data:
        role = {p["name"]: p["value"] for p in c["properties"]}["bastion:role"]
        path = demo_run.inputs / "data" / f"{role}.jsonl"
        assert c["name"] == path.name and _sha256(c) == hashlib.sha256(path.read_bytes()).hexdigest()
    # The dependency graph: the model is made from the base model and both data sets.
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in bom["dependencies"]}
    assert deps[model["bom-ref"]] == set(components)
    assert bom["metadata"]["tools"]["components"][0]["name"] == "bastion"


def test_mlbom_of_a_tampered_run_says_it_does_not_verify(demo_copy: Path, demo_run: DemoRun) -> None:
    (demo_copy / "extra.bin").write_bytes(b"not signed")
    content = build_report(evidence_from_run_dir(demo_copy, TrustArgs(public_keys=(demo_run.public_key,))))
    bom = json.loads(build_mlbom(content))
    props = {p["name"]: p["value"] for p in bom["metadata"]["component"]["properties"]}
    assert props["bastion:verified"] == "false"
    assert "subject.extra" in props["bastion:verification_failures"]
    # The BOM describes the signed subjects, not the file that appeared since.
    assert "extra.bin" not in {c["name"] for c in bom["metadata"]["component"]["components"]}
