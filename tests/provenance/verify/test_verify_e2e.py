"""End to end: a real (tiny, CPU) transformers + PEFT training run signed with the organisation's CA,
verified by `bastion verify` with a deploy policy and by the stock OpenSSF model_signing verifier."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

import bastion.plugins.hf as hf
from bastion.provenance.hashing import hash_path, sha256_file
from bastion.provenance.signing.testing import TestPKI
from bastion.provenance.verify import verify


@pytest.mark.slow
def test_ca_signed_training_run_passes_policy_and_stock_verifier(
    tmp_path: Path, pki: TestPKI, stock_verify: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from bastion.plugins.hf.tiny import build_tiny_model, write_demo_datasets

    model_dir = build_tiny_model(tmp_path / "tiny-llama")
    data = tmp_path / "data"
    data.mkdir()
    write_demo_datasets(data)
    train, eval_ = data / "train.jsonl", data / "eval.jsonl"
    out = tmp_path / "out"
    signing = {
        "backend": "certificate",
        "private_key": str(pki.leaf_key),
        "certificate": str(pki.leaf_cert),
        "certificate_chain": [str(pki.intermediate_cert)],
    }
    cb = hf.BastionCallback(
        base_model=model_dir,
        datasets=[hf.DatasetInput(train, "train"), hf.DatasetInput(eval_, "eval")],
        signing=signing,
        sign_checkpoints=True,
        strict=True,
    )
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=2,
        per_device_train_batch_size=4,
        logging_steps=1,
        save_strategy="steps",
        save_steps=2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=7,
    )
    trainer = Trainer(model=model, args=args, train_dataset=hf.tiny.tokenize_chat_jsonl(tok, train), callbacks=[cb])
    trainer.train()
    trainer.save_model()
    cb.finalize()

    policy = tmp_path / "deploy-policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "allowed_signers": [{"certificate": {"san": pki.leaf_email, "issuer": "CN=Acme Signing CA,O=Acme"}}],
                "allowed_base_models": [{"sha256": hash_path(model_dir).sha256, "name": "tiny-llama"}],
                "datasets": {"required": [{"sha256": sha256_file(train), "role": "train"}]},
                "train_eval_overlap": "none",
                "max_age": "1h",
            }
        )
    )
    report = verify(out, certificate_chain=[pki.root_cert], policy=policy)
    assert report.ok, report.lines()
    assert report.passed == ["signature", "statement", "subjects", "model_signature", "ledger", "policy"]
    assert verify(out / "checkpoint-2", certificate_chain=[pki.root_cert]).ok

    stock = stock_verify(
        "certificate",
        str(out),
        "--signature",
        str(out / "bastion/model.sig"),
        "--certificate_chain",
        str(pki.root_cert),
    )
    assert stock.returncode == 0, stock.stderr

    # The same run against a policy that forbids its training data, and after a weight is touched.
    policy.write_text(yaml.safe_dump({"datasets": {"forbidden": [sha256_file(train)]}}))
    assert verify(out, certificate_chain=[pki.root_cert], policy=policy).reasons() == {"policy.datasets.forbidden"}
    weights = out / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    assert "subject.modified" in verify(out, certificate_chain=[pki.root_cert]).reasons()
    stock = stock_verify(
        "certificate",
        str(out),
        "--signature",
        str(out / "bastion/model.sig"),
        "--certificate_chain",
        str(pki.root_cert),
    )
    assert stock.returncode == 1
