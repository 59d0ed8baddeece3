"""``bastion inspect``: summary of a run record, ledger check against the statement's head."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_runner import run

from bastion.provenance import load_statement, write_statement
from bastion.provenance.inputs import DatasetInput
from bastion.provenance.recorder import RunRecorder

BASTION = str(Path(sys.executable).parent / "bastion")


def make_run(root: Path) -> tuple[Path, dict[str, Any]]:
    """A run record written by RunRecorder (the recorder every integration uses), without training."""
    base = root / "base-model"
    base.mkdir(parents=True)
    (base / "config.json").write_text('{"model_type": "llama"}')
    (base / "model.safetensors").write_bytes(b"\x02" * 2048)
    data = root / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"text": f"sample {i}"}) + "\n" for i in range(5)))
    (data / "eval.jsonl").write_text('{"text": "sample 1"}\n{"text": "held out"}\n')
    out = root / "out"
    times = iter([dt.datetime(2026, 11, 25, 21, 0, tzinfo=dt.UTC), dt.datetime(2026, 11, 25, 21, 1, tzinfo=dt.UTC)])
    rec = RunRecorder(
        base_model=base,
        datasets=[DatasetInput(data / "train.jsonl"), DatasetInput(data / "eval.jsonl", role="eval")],
        config={"learning_rate": 0.001, "max_steps": 2},
        framework="transformers",
        strict=True,  # inputs hashed before start() returns: a stable ledger order
        run_id="run-123",
        clock=lambda: next(times),
    )
    rec.start(out)
    (out / "checkpoint-2").mkdir(parents=True)
    (out / "adapter_model.safetensors").write_bytes(b"\x03" * 512)
    (out / "adapter_config.json").write_text('{"r": 4}')
    (out / "checkpoint-2" / "trainer_state.json").write_text("{}")
    rec.log(2, 1.0, {"train_loss": 1.5, "eval_loss": 1.75})
    rec.train_end(2, 1.0)
    return out, load_statement(rec.finalize())


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path)[0]


def test_summary(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "inspect", str(run_dir))
    assert code == 0, err
    stmt = json.loads((run_dir / "bastion" / "statement.json").read_text())
    pred = stmt["predicate"]
    assert "run id: run-123" in out
    assert "framework: transformers" in out
    assert f"base model: base-model  sha256 {pred['base_model']['digest']['sha256']}  (2 files)" in out
    assert f"config sha256: {pred['config']['digest']['sha256']}" in out
    for d in pred["datasets"]:
        row = next(line for line in out.splitlines() if line.strip().startswith(d["name"]))
        assert d["role"] in row and str(d["records"]) in row and d["merkle_root"] in row
    assert "train/eval overlap (records): 1" in out
    assert "metrics: eval_loss=1.75, train_loss=1.5" in out
    head = pred["ledger"]["head"]
    n = pred["ledger"]["entries"]
    assert f"ledger: bastion/ledger.jsonl: verifies against the recorded head ({n} entries, head {head})" in out
    assert "subjects: 3 files" in out
    for s in stmt["subject"]:
        assert s["digest"]["sha256"] in out
    assert "signatures: none (unsigned run record)" in out
    assert f"Python {pred['environment']['python']}" in out


@pytest.mark.parametrize("which", ["out", "record", "statement"])
def test_accepts_output_dir_record_dir_or_statement(
    run_dir: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    target = {"out": run_dir, "record": run_dir / "bastion", "statement": run_dir / "bastion" / "statement.json"}
    code, out, _ = run(capsys, "inspect", str(target[which]), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["run_dir"] == str(run_dir)
    assert doc["ledger"]["verified"] is True


def test_json_summary(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "inspect", str(run_dir), "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["framework"] == "transformers"
    assert [(d["name"], d["role"], d["records"]) for d in doc["datasets"]] == [
        ("train.jsonl", "train", 5),
        ("eval.jsonl", "eval", 2),
    ]
    assert doc["ledger"]["found"] == {"entries": doc["ledger"]["entries"], "head": doc["ledger"]["head"]}
    assert [s["name"] for s in doc["subjects"]] == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "checkpoint-2/trainer_state.json",
    ]
    assert all(s["present"] for s in doc["subjects"])
    assert doc["signatures"] == []
    assert doc["metrics"] == {"train_loss": 1.5, "eval_loss": 1.75}


def test_signature_files_are_listed(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "bastion" / "statement.sigstore.json").write_text("{}")
    (run_dir / "bastion" / "model.sig").write_text("{}")
    code, out, _ = run(capsys, "inspect", str(run_dir))
    assert code == 0
    assert "signatures: model.sig, statement.sigstore.json" in out


def test_missing_subject_files_are_flagged(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "adapter_model.safetensors").unlink()
    code, out, _ = run(capsys, "inspect", str(run_dir))
    assert code == 0
    assert "subjects: 3 files (1 missing on disk)" in out
    assert "MISSING" in next(line for line in out.splitlines() if "adapter_model.safetensors" in line)


def test_tampered_ledger_fails_with_its_line(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = run_dir / "bastion" / "ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    ledger.write_text("".join([lines[0], lines[2], lines[1], lines[3]]))
    code, out, _ = run(capsys, "inspect", str(run_dir))
    assert code == 1
    assert "ledger: bastion/ledger.jsonl: DOES NOT VERIFY: bastion/ledger.jsonl:2: sequence number is 2" in out
    code, out, _ = run(capsys, "inspect", str(run_dir), "--json")
    assert code == 1
    led = json.loads(out)["ledger"]
    assert led["verified"] is False and led["line"] == 2


def test_truncated_ledger_is_caught_by_the_recorded_head(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = run_dir / "bastion" / "ledger.jsonl"
    ledger.write_text("".join(ledger.read_text().splitlines(keepends=True)[:-1]))
    code, out, _ = run(capsys, "inspect", str(run_dir))
    assert code == 1
    n = json.loads((run_dir / "bastion" / "statement.json").read_text())["predicate"]["ledger"]["entries"]
    assert f"has {n - 1} entries but the signed statement records {n} (it was truncated" in out


def test_missing_ledger(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_dir / "bastion" / "ledger.jsonl").unlink()
    code, out, _ = run(capsys, "inspect", str(run_dir))
    assert code == 1
    assert "DOES NOT VERIFY: ledger not found: bastion/ledger.jsonl" in out


def test_malformed_predicate_does_not_crash(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = run_dir / "bastion" / "statement.json"
    st = json.loads(p.read_text())
    st["predicate"].update(datasets="not a list", environment=[1, 2], metrics=None, base_model=7, framework="[/bold]x")
    st["predicate"]["ledger"] = {"path": "/etc/passwd", "head": 5}
    p.write_text(json.dumps(st))
    code, out, err = run(capsys, "inspect", str(run_dir))
    assert code == 1
    assert "Traceback" not in err
    assert "base model: not recorded" in out
    assert "framework: [/bold]x" in out  # data, not markup
    assert "datasets: none recorded" in out
    assert "ledger path is absolute; not followed" in out


@pytest.mark.parametrize(
    ("setup", "needle"),
    [
        (lambda p: None, "{p}/nope: path not found"),
        (lambda p: (p / "nope").mkdir(), "{p}/nope: not a Bastion run directory (no bastion/statement.json)"),
        (
            lambda p: (p / "nope" / "bastion").mkdir(parents=True),
            "{p}/nope/bastion: the run record has no statement.json",
        ),
        (
            lambda p: (
                (p / "nope" / "bastion").mkdir(parents=True)
                or (p / "nope" / "bastion" / "statement.json").write_text("{not json")
            ),
            "{p}/nope/bastion/statement.json: statement is not valid JSON",
        ),
        (
            lambda p: (
                (p / "nope" / "bastion").mkdir(parents=True)
                or (p / "nope" / "bastion" / "statement.json").write_text('{"_type": "other"}')
            ),
            "not an in-toto Statement v1",
        ),
    ],
    ids=["missing", "not-a-run", "no-statement", "bad-json", "not-a-statement"],
)
def test_bad_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: Any, needle: str) -> None:
    setup(tmp_path)
    code, out, err = run(capsys, "inspect", str(tmp_path / "nope"))
    assert code == 2 and out == ""
    assert err.startswith("error: ")
    assert needle.format(p=tmp_path) in err
    assert "Traceback" not in err


def test_real_entry_point(run_dir: Path, tmp_path: Path) -> None:
    ok = subprocess.run([BASTION, "inspect", str(run_dir)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "verifies against the recorded head" in ok.stdout
    bad = subprocess.run([BASTION, "inspect", str(tmp_path / "nope")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_inspect_a_real_trainer_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real transformers Trainer run (tiny local model, LoRA, CPU) recorded by BastionCallback."""
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from bastion.plugins.hf import BastionCallback, DatasetInput
    from bastion.plugins.hf.tiny import build_tiny_model, write_demo_datasets

    model_dir = build_tiny_model(tmp_path / "tiny")
    data = write_demo_datasets(tmp_path / "data")
    tok = AutoTokenizer.from_pretrained(model_dir)
    rows = []
    for line in data["train"].read_text().splitlines():
        enc = tok(
            tok.apply_chat_template(json.loads(line)["messages"], tokenize=False),
            max_length=32,
            truncation=True,
            padding="max_length",
        )
        enc["labels"] = list(enc["input_ids"])
        rows.append(dict(enc))
    out = tmp_path / "out"
    cb = BastionCallback(
        base_model=model_dir,
        datasets=[DatasetInput(data["train"], role="train"), DatasetInput(data["eval"], role="eval")],
        config={"lr": 1e-3},
        framework="transformers",
    )
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"),
    )
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=2,
        per_device_train_batch_size=2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(rows), callbacks=[cb])
    trainer.train()
    trainer.save_model()
    cb.finalize()
    capsys.readouterr()  # drop the Trainer's own log lines

    code, text, err = run(capsys, "inspect", str(out), "--json")
    assert code == 0, err
    doc = json.loads(text)
    assert doc["framework"] == "transformers"
    assert {d["role"] for d in doc["datasets"]} == {"train", "eval"}
    assert all(d["records"] and len(d["merkle_root"]) == 64 for d in doc["datasets"])
    assert doc["ledger"]["verified"] is True
    assert any(s["name"] == "adapter_model.safetensors" for s in doc["subjects"])
    assert doc["base_model"]["files"] >= 2


def test_signer_and_config_values_are_shown_with_credentials_withheld(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bastion.provenance.signing import SigningConfig, generate_key_pair, sign_run
    from bastion.provenance.signing.testing import make_run_dir
    from bastion.provenance.statement import load_statement

    out = make_run_dir(tmp_path / "out")
    # A record written by an older version that kept a credential in the config: inspect withholds it.
    secret = "hf_" + "Zy9" * 12
    st = load_statement(out / "bastion" / "statement.json")
    st["predicate"]["config"] = {
        "source": "train.yaml",
        "digest": {"sha256": "c" * 64},
        "value": {"learning_rate": 0.0001, "hub_token": secret, "db": "postgresql://u:pw9@h/x"},
        "redacted": ["/wandb_api_key"],
    }
    write_statement(st, out / "bastion" / "statement.json")
    keys = generate_key_pair(tmp_path / "keys")
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))

    code, text, err = run(capsys, "inspect", str(out), "--key", str(keys.public_key))
    assert code == 0, err
    from bastion.provenance.signing.bundle import key_fingerprint
    from bastion.provenance.signing.keys import load_public_key

    fingerprint = key_fingerprint(load_public_key(keys.public_key))
    assert f"signer: key {fingerprint}" in text
    assert "config: from train.yaml; credentials withheld at /db, /hub_token, /wandb_api_key" in text
    assert "  learning_rate: 0.0001" in text and "  hub_token: [REDACTED]" in text
    assert "  db: postgresql://u:[REDACTED]@h/x" in text
    assert secret not in text and "pw9" not in text

    code, text, _ = run(capsys, "inspect", str(out))  # without the public key: its id, and how to get more
    assert "signer: key id " in text and "pass --key PUBLIC_KEY" in text
    code, raw, _ = run(capsys, "inspect", str(out), "--json")
    doc = json.loads(raw)
    assert doc["signer"]["type"] == "key" and doc["signer"]["key_hint"]
    assert doc["config"]["hub_token"] == "[REDACTED]" and secret not in raw


def test_certificate_signer_is_named_by_its_san(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509

    from bastion.provenance.signing import SigningConfig, sign_run
    from bastion.provenance.signing.sign_certificate import certificate_identity
    from bastion.provenance.signing.testing import make_run_dir, make_test_pki

    pki = make_test_pki(tmp_path / "pki")
    out = make_run_dir(tmp_path / "out")
    cfg = SigningConfig(
        backend="certificate",
        private_key=pki.leaf_key,
        certificate=pki.leaf_cert,
        certificate_chain=(pki.intermediate_cert,),
    )
    sign_run(out, cfg)
    ident = certificate_identity(x509.load_pem_x509_certificate(pki.leaf_cert.read_bytes()))
    code, text, _ = run(capsys, "inspect", str(out))
    assert code == 0
    [line] = [ln for ln in text.splitlines() if ln.startswith("signer: ")]
    assert f"certificate {ident['subject']}" in line and ident["san"][0] in line and ident["issuer"] in line


def test_sigstore_signer_is_named_by_identity_and_issuer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A keyless bundle: the identity (SAN) and OIDC issuer come from the Fulcio certificate's extensions."""
    import base64
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from bastion.provenance.signing.testing import make_run_dir

    out = make_run_dir(tmp_path / "out")
    issuer = "https://token.actions.example.com"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.dev")])
    now = dt.datetime.now(dt.UTC)
    utf8 = issuer.encode()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(minutes=10))
        .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("ci@acme.example")]), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), bytes([0x0C, len(utf8)]) + utf8),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    statement = (out / "bastion" / "statement.json").read_bytes()
    bundle = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {
            "certificate": {"rawBytes": base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()},
            "tlogEntries": [],
        },
        "dsseEnvelope": {
            "payload": base64.b64encode(statement).decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64.b64encode(b"x" * 64).decode()}],
        },
    }
    (out / "bastion" / "statement.sigstore.json").write_text(json.dumps(bundle))
    code, text, err = run(capsys, "inspect", str(out))
    assert code == 0, err
    assert f"signer: Sigstore identity ci@acme.example (issuer {issuer})" in text
