"""No credential reaches any file of a run record: a real Trainer run (plain Transformers path, signed,
with a checkpoint) whose config and TrainingArguments carry every credential form, then every file under
the output directory's record folders is searched for each planted secret, base64-decoded payloads too."""

from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

from hf_helpers import make_trainer

from bastion.plugins.hf import BastionCallback, DatasetInput
from bastion.provenance import load_statement, signing
from bastion.provenance.redaction import REDACTED


def j(*parts: str) -> str:  # fake, shape-valid secrets assembled at run time
    return "".join(parts)


AKIA = j("AKIA", "Q3EXAMPLE7ZX2B4N")
AWS_SECRET = j("wJalrXUtnFEMI/K7MDENG/", "bPxRfiCYEXAMPLEKEY")
AWS_SESSION = j("IQoJb3JpZ2lu", "X2VjEHMaCXVzLWVhc3QtMSJHMEUCIQD" * 3)
HF = j("hf_", "aBcDeFgHiJkLmNoPqRsTuVwXyZ01234567")
GHP = j("ghp_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8")
OPENAI = j("sk-proj-", "Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv")
JWT = j("eyJhbGciOiJIUzI1NiJ9", ".eyJzdWIiOiIxMjM0NTY3ODkwIn0", ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
AZ_KEY = j("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsu", "Fq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
SAS_SIG = j("5dT1n%2Bc2y0Q", "hO8Zg4pWyC%2FnV1Z3dXJ3Yk0%3D")
PEM_LINE = j("MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun")
PEM = j("-----BEGIN RSA ", "PRIVATE KEY-----\n", PEM_LINE, "\n-----END RSA ", "PRIVATE KEY-----\n")
DB_PW = "Pg9-pass-word"
MLFLOW = "mlflow-opaque-tracking-value-77"
BEARER = j("Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8", "Qr9St0Uv")

PLANTED = {
    "aws access key id": AKIA,
    "aws secret": AWS_SECRET,
    "aws session token": AWS_SESSION[:40],
    "hf token": HF,
    "github token": GHP,
    "openai key": OPENAI,
    "jwt": JWT,
    "azure account key": AZ_KEY,
    "azure sas signature": SAS_SIG,
    "pem private key": PEM_LINE,
    "database password": DB_PW,
    "mlflow token": MLFLOW,
    "bearer": BEARER,
}

CONFIG = {
    "base_model": "tiny",
    "learning_rate": 2e-4,
    "aws_access_key_id": AKIA,
    "aws_secret_access_key": AWS_SECRET,
    "aws_session_token": AWS_SESSION,
    "mlflow_tracking_token": MLFLOW,
    "sas_token": j("sv=2022-11-02&sig=", SAS_SIG),
    "private_key": PEM,
    "azure_storage_connection_string": j("DefaultEndpointsProtocol=https;AccountName=a;AccountKey=", AZ_KEY),
    "database_url": f"postgresql://trainer:{DB_PW}@db.internal:5432/runs",
    "headers": {"Authorization": f"Bearer {BEARER}"},
    "notes": f"uploaded with key {AKIA} and {GHP}; eval via {OPENAI}",
    "callbacks": [{"name": "HF_TOKEN", "value": HF}, {"name": "SESSION", "value": JWT}],
    "data_url": j("https://acct.blob.core.windows.net/d/train.jsonl?sv=2022-11-02&sp=r&sig=", SAS_SIG),
    "pad_token": "<pad>",
}


def _decoded_variants(blob: bytes) -> list[bytes]:
    """The file's bytes and every base64 run in it decoded (DSSE payloads are base64)."""
    out = [blob]
    for run in re.findall(rb"[A-Za-z0-9+/_=-]{24,}", blob):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                out.append(decode(run + b"=" * (-len(run) % 4)))
            except (binascii.Error, ValueError):
                continue
    return out


def test_no_planted_credential_reaches_any_record_file(
    tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    keys = signing.generate_key_pair(tmp_path / "keys")
    out = tmp_path / "out"
    cb = BastionCallback(
        base_model=tiny_model_dir,
        datasets=[DatasetInput(data["train"], "train")],
        config=CONFIG,
        signing={"backend": "key", "private_key": str(keys.private_key)},
        sign_checkpoints=True,
    )
    trainer = make_trainer(tiny_model_dir, out, data["train"], None, [cb], max_steps=2, save_steps=2)
    trainer.args.run_name = f"run postgresql://trainer:{DB_PW}@db.internal/runs {HF}"
    trainer.args.hub_token = HF
    trainer.train()
    trainer.save_model()
    cb.finalize()

    record_files = [p for p in out.rglob("*") if p.is_file() and "bastion" in p.relative_to(out).parts]
    names = {p.relative_to(out).as_posix() for p in record_files}
    assert {"bastion/statement.json", "bastion/ledger.jsonl", "bastion/statement.sigstore.json"} <= names
    assert "checkpoint-2/bastion/statement.json" in names
    # The search sees inside the signed bundle's base64 DSSE payload (a kept value is found there).
    bundle = _decoded_variants((out / "bastion" / "statement.sigstore.json").read_bytes())
    assert any(re.search(rb'"pad_token": ?"<pad>"', v) for v in bundle)
    for path in record_files:
        variants = _decoded_variants(path.read_bytes())
        for label, secret in PLANTED.items():
            assert not any(secret.encode() in v for v in variants), f"{label} found in {path.relative_to(out)}"

    pred = load_statement(out / "bastion" / "statement.json")["predicate"]
    config = pred["config"]["value"]
    assert config["pad_token"] == "<pad>" and config["learning_rate"] == 2e-4  # ordinary values are kept
    assert config["database_url"] == f"postgresql://trainer:{REDACTED}@db.internal:5432/runs"
    assert config["headers"] == {"Authorization": REDACTED}
    # The record says where values were withheld (key paths, never values).
    assert set(pred["config"]["redacted"]) == {
        "/aws_access_key_id",  # by its AKIA shape (the name is an identifier's)
        "/aws_secret_access_key",
        "/aws_session_token",
        "/mlflow_tracking_token",
        "/sas_token",
        "/private_key",
        "/azure_storage_connection_string",
        "/database_url",
        "/headers/Authorization",
        "/notes",
        "/callbacks/0/value",
        "/callbacks/1/value",
        "/data_url",
    }
    assert {"/run_name", "/hub_token"} <= set(pred["training_arguments"]["redacted"])
