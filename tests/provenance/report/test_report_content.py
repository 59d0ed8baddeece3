"""The audit report of real signed runs: what the run recorded is what the page and JSON show."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from report_helpers import DemoRun

from bastion.provenance.ledger import read_entries
from bastion.provenance.report import SECTIONS, TrustArgs, build_report, evidence_from_run_dir, render_html
from bastion.provenance.report.html import CSP
from bastion.provenance.signing import sign_run
from bastion.provenance.signing.bundle import key_fingerprint
from bastion.provenance.signing.keys import load_public_key
from bastion.provenance.signing.testing import TestPKI
from bastion.provenance.statement import load_statement


def _report(run: Path, **trust: Any) -> tuple[dict[str, Any], str]:
    content = build_report(evidence_from_run_dir(run, TrustArgs(**trust)))
    return content, render_html(content)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_report_shows_what_the_signed_run_recorded(demo_run: DemoRun) -> None:
    content, page = _report(demo_run.run, public_keys=(demo_run.public_key,))
    statement = load_statement(demo_run.run / "bastion" / "statement.json")
    pred = statement["predicate"]

    v = content["verification"]
    assert v["ok"] and v["failures"] == []
    assert {"signature", "statement", "subjects", "model_signature", "ledger"} <= set(v["passed"])
    fingerprint = key_fingerprint(load_public_key(demo_run.public_key))
    assert v["signer"]["fingerprint"] == fingerprint and fingerprint in page
    assert "VERIFIED: every check passed" in page and "VERIFICATION FAILED" not in page

    assert content["run"]["run_id"] == pred["run_id"] and pred["run_id"] in page
    # Datasets: the digests of the files the demo really trained on, with roles and counts.
    by_role = {d["role"]: d for d in content["datasets"]}
    assert set(by_role) == {"train", "eval"}
    for role in ("train", "eval"):
        f = demo_run.inputs / "data" / f"{role}.jsonl"
        assert by_role[role]["sha256"] == _sha(f) and _sha(f) in page
        lines = f.read_text(encoding="utf-8").splitlines()
        assert by_role[role]["records"] == len(lines)
        assert by_role[role]["merkle_root"] in page
        # Only digests and counts: no record's text reaches the page.
        for line in lines[:10]:
            for message in json.loads(line)["messages"]:
                assert html.escape(message["content"]) not in page
    assert content["overlap"] == {"train_eval_records": 0, "computed": True, "has_train": True, "has_eval": True}
    assert content["base_model"]["sha256"] == pred["base_model"]["digest"]["sha256"]
    assert content["base_model"]["sha256"] in page

    # Outputs: every signed subject, and the manifest digest the ledger's outputs entry recorded.
    subjects = {s["name"]: s["digest"]["sha256"] for s in statement["subject"]}
    assert {f["name"]: f["sha256"] for f in content["outputs"]["files"]} == subjects
    entries = [e for _, e in read_entries(demo_run.run / "bastion" / "ledger.jsonl")]
    outputs_entry = next(e for e in entries if e["kind"] == "outputs")
    assert content["outputs"]["sha256"] == outputs_entry["data"]["digest"]["sha256"]
    for name, digest in subjects.items():
        assert html.escape(name) in page and digest in page

    # Curves: every logged loss, at its step, as the ledger holds it; the plot is in the page.
    assert [tuple(p) for p in content["curves"]["loss"]] == [
        (e["data"]["step"], e["data"]["metrics"]["loss"])
        for e in entries
        if e["kind"] == "log" and "loss" in e["data"]["metrics"]
    ]
    assert len(content["curves"]["loss"]) == 4
    assert re.search(r'<path d="M[\d. ]+( L[\d. ]+){3}"[^>]*data-series="loss"', page)
    assert content["metrics"]["final"]["eval_loss"] == pred["metrics"]["final"]["eval_loss"]

    led = content["ledger"]
    assert led["verified"] and led["head"] == pred["ledger"]["head"] and led["entries_read"] == len(entries)
    assert [c["path"] for c in led["checkpoints"]] == ["checkpoint-2", "checkpoint-4"]
    assert content["environment"]["packages"]["torch"] == pred["environment"]["packages"]["torch"]
    # Lineage: base model and datasets -> run -> outputs and checkpoints.
    edges = {(e["from"], e["relation"], e["to"]) for e in content["lineage"]["edges"]}
    run_node = f"run:{pred['run_id']}"
    assert (f"model:{content['base_model']['sha256']}", "base model", run_node) in edges
    assert (f"dataset:{by_role['eval']['sha256']}", "eval", run_node) in edges
    assert (run_node, "produced", f"output:{content['outputs']['sha256']}") in edges
    assert sum(1 for e in edges if e[1] == "checkpoint") == 2
    assert content["warnings"] == {"record": [], "ledger": [], "report": []}


def test_every_section_and_compliance_link_is_in_the_page(demo_run: DemoRun) -> None:
    content, page = _report(demo_run.run, public_keys=(demo_run.public_key,))
    anchors = set(re.findall(r'<section id="([^"]+)"', page))
    assert anchors == {a for a, _ in SECTIONS}
    refs = {row["ref"]: row for row in content["compliance"]}
    assert {"Art. 10(1)", "Art. 10(2)(b)", "Art. 12(1)", "Annex IV 2(d)", "Annex IV 2(g)"} <= set(refs)
    for row in content["compliance"]:
        for s in row["sections"]:
            assert s in anchors and f'href="#{s}"' in page
    assert refs["Art. 12(1)"]["status"] == "recorded"
    assert refs["Art. 10(2)(f)-(g)"]["status"] == "not in record"
    # Offline by construction: no script, nothing loaded from elsewhere, a CSP that forbids both.
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    assert f'http-equiv="Content-Security-Policy" content="{html.escape(CSP)}"' in page
    assert CSP.startswith("default-src 'none';")


def test_tampered_run_shows_the_failed_checks(demo_copy: Path, demo_run: DemoRun) -> None:
    weights = demo_copy / "adapter_model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1
    weights.write_bytes(bytes(blob))
    ledger = demo_copy / "bastion" / "ledger.jsonl"
    lines = ledger.read_text(encoding="utf-8").splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if '"kind":"log"' in line)
    lines[i] = re.sub(r'"loss":(\d)', lambda m: f'"loss":{int(m.group(1)) + 1}', lines[i], count=1)
    ledger.write_text("".join(lines), encoding="utf-8")

    content, page = _report(demo_copy, public_keys=(demo_run.public_key,))
    v = content["verification"]
    assert not v["ok"]
    checks = {f["check"]: f for f in v["failures"]}
    assert set(checks) == {"subject.modified", "ledger.broken"}
    assert checks["subject.modified"]["found"] == f"sha256:{_sha(weights)}"
    assert content["ledger"]["verified"] is False and content["ledger"]["problem_line"] == i + 1
    assert "VERIFICATION FAILED: 2 check(s) failed" in page and "VERIFIED: every check passed" not in page
    assert "subject.modified" in page and "ledger.broken" in page and "adapter_model.safetensors" in page
    assert "these curves are from an unverified file" in page
    statuses = {r["ref"]: r["status"] for r in content["compliance"]}
    assert statuses["Art. 12(1)"] == "partial" and statuses["Annex IV 2(h)"] == "missing"


def test_edited_statement_page_shows_the_signed_content(demo_copy: Path, demo_run: DemoRun) -> None:
    path = demo_copy / "bastion" / "statement.json"
    st = json.loads(path.read_text(encoding="utf-8"))
    st["predicate"]["datasets"][0]["name"] = "not-what-was-signed.jsonl"
    path.write_text(json.dumps(st, indent=2), encoding="utf-8")
    content, page = _report(demo_copy, public_keys=(demo_run.public_key,))
    assert [f["check"] for f in content["verification"]["failures"]] == ["statement.mismatch"]
    assert "predicate.datasets[0].name" in page
    assert content["datasets"][0]["name"] == "train.jsonl"
    assert "not-what-was-signed" not in page


def test_without_trust_material_the_signature_is_not_taken_on_faith(demo_run: DemoRun) -> None:
    content, page = _report(demo_run.run)
    v = content["verification"]
    assert not v["ok"] and "signature" not in v["passed"] and v["signer"] is None
    assert "subjects" in v["passed"] and "ledger" in v["passed"]
    assert any("no trust material" in w for w in content["warnings"]["report"])
    assert "no trust material was given" in page


def test_certificate_signed_run(run_dir: Callable[..., Path], pki: TestPKI) -> None:
    out = run_dir()
    sign_run(
        out,
        {
            "backend": "certificate",
            "private_key": str(pki.leaf_key),
            "certificate": str(pki.leaf_cert),
            "certificate_chain": [str(pki.intermediate_cert)],
        },
    )
    content, page = _report(out, certificate_chain=(pki.root_cert,))
    assert content["verification"]["ok"], content["verification"]["failures"]
    signer = content["verification"]["signer"]
    assert signer["type"] == "certificate" and pki.leaf_email in json.dumps(signer)
    assert html.escape(pki.leaf_email) in page
    assert content["verification"]["trust"]["certificate_chain"] == [pki.root_cert.name]
    # A CA that did not issue the signer: the page says the signature is not trusted.
    other, other_page = _report(out, certificate_chain=(pki.other_root_cert,))
    assert not other["verification"]["ok"] and "VERIFICATION FAILED" in other_page


def test_values_are_escaped_and_credentials_withheld(run_dir: Callable[..., Path]) -> None:
    hostile = '<img src=x onerror="alert(1)">.jsonl'
    out = run_dir(
        datasets=[
            {"name": hostile, "role": "train", "digest": {"sha256": "a" * 64}, "records": 3},
            {"name": "</td></tr></table><script>alert(2)</script>", "role": "eval", "digest": {"sha256": "b" * 64}},
        ]
    )
    # A record written by an older writer whose redaction missed a token (the recorder withholds it today).
    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    path = out / "bastion" / "statement.json"
    st = json.loads(path.read_text(encoding="utf-8"))
    st["predicate"]["config"]["value"]["hub"] = {"token": token}
    st["predicate"]["warnings"] = [f"could not read <b>x</b> with {token}"]
    path.write_text(json.dumps(st), encoding="utf-8")

    content, page = _report(out)
    as_json = json.dumps(content)
    assert token not in page and token not in as_json
    assert "<script>alert(2)" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert html.escape(hostile) in page
    withheld = " ".join(content["warnings"]["report"])
    assert "/hub/token" in withheld and "record warnings" in withheld
    assert content["config"]["value"]["hub"]["token"] == "[REDACTED]"


def test_missing_run_dir_is_a_clear_error(tmp_path: Path) -> None:
    from bastion.errors import InputError

    with pytest.raises(InputError, match="path not found"):
        evidence_from_run_dir(tmp_path / "nope", TrustArgs())
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not a Bastion run directory"):
        evidence_from_run_dir(tmp_path / "empty", TrustArgs())


def test_lineage_shows_exports_and_earlier_runs(tmp_path: Path, run_dir: Callable[..., Path]) -> None:
    from bastion.provenance.predicate import DatasetRecord, ModelInput
    from bastion.provenance.recorder import RunRecorder

    recorder = RunRecorder(config={"learning_rate": 0.1}, framework="transformers", fsync="never", run_id="run-m")
    recorder.record_inputs(
        base_model=ModelInput(path_name="base", sha256="1" * 64),
        datasets=[DatasetRecord(name="train.jsonl", role="train", sha256="a" * 64, records=2)],
        overlap=None,
    )
    out = tmp_path / "out"
    recorder.start(out)
    (out / "adapter.bin").write_bytes(b"adapter")
    recorder.log(1, 1.0, {"loss": 0.5})
    merged = tmp_path / "merged"
    merged.mkdir()
    (merged / "model.bin").write_bytes(b"merged weights")
    parent_statement = "e" * 64
    details = {
        "method": "merge_and_unload",
        "base_model": {"path_name": "base", "digest": {"sha256": "1" * 64}},
        "adapter": {"path_name": "out", "files": []},
        "training_statement": {"sha256": parent_statement},
    }
    rec = recorder.record_export(merged, kind="merge", details=details)
    assert rec is not None
    recorder.train_end(1, 1.0)
    recorder.finalize()

    # The run's own record: base model and data -> run -> outputs and the merged model (from its ledger).
    content, page = _report(out)
    edges = {(e["from"], e["relation"], e["to"]) for e in content["lineage"]["edges"]}
    assert ("run:run-m", "merge", f"output:{rec.digest.sha256}") in edges
    assert (f"model:{'1' * 64}", "base model", "run:run-m") in edges
    assert rec.digest.sha256 in page and "merge · merge_and_unload" in page
    # The merged model's own record: its parent is the same training run.
    content, page = _report(merged)
    assert content["run"]["exports"] == ["merge"]
    merge_nodes = [n for n in content["lineage"]["nodes"] if n["kind"] == "merge"]
    assert [(n["label"], n["sha256"]) for n in merge_nodes] == [("merged", rec.digest.sha256)]
    assert content["outputs"]["sha256"] == rec.digest.sha256
    merged_edges = {(e["from"], e["relation"], e["to"]) for e in content["lineage"]["edges"]}
    node = f"output:{rec.digest.sha256}"
    assert ("run:run-m", "merge", node) in merged_edges
    assert (f"model:{'1' * 64}", "merged (base model)", node) in merged_edges
    assert ("model:adapter", "merged (adapter)", node) in merged_edges
    assert (f"statement:{parent_statement}", "parent record", node) in merged_edges

    # A fresh run in a directory that held another: the earlier run is a parent in the graph.
    again = run_dir("again", run_id="run-1")
    run_dir("again", run_id="run-2")
    content, _page = _report(again)
    prev = next(n for n in content["lineage"]["nodes"] if n["kind"] == "previous_run")
    assert prev["label"] == "run-1" and prev["detail"] == "finished"
    assert (prev["id"], "earlier run in the same directory", "run:run-2") in {
        (e["from"], e["relation"], e["to"]) for e in content["lineage"]["edges"]
    }
