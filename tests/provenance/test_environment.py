"""The environment record: versions and platform only, never environment variable values."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata

import pytest

from bastion.provenance.canonical import canonical_json
from bastion.provenance.environment import capture_environment, package_versions

SECRET = "hf_s3cr3t-T0KEN-value-that-must-never-be-recorded-9f8e7d"


def test_environment_variable_values_are_never_captured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET + "-openai")
    monkeypatch.setenv("BASTION_SIGNING_PASSWORD", SECRET + "-pw")
    import torch  # noqa: F401  (loaded, so the accelerator branch runs too)

    env = capture_environment()
    text = json.dumps(env)
    assert SECRET not in text
    assert "s3cr3t" not in text
    assert "HF_TOKEN" not in text and "OPENAI_API_KEY" not in text
    # The record is canonicalizable: it goes into the ledger and the signed statement as is.
    canonical_json(env)


def test_environment_contents() -> None:
    import torch

    env = capture_environment()
    assert env["python"] == platform.python_version() == sys.version.split()[0]
    assert env["implementation"] == platform.python_implementation()
    assert env["machine"] == platform.machine()
    assert env["packages"]["torch"] == metadata.version("torch")
    assert "bastion-provenance" in env["packages"]
    assert env["cuda_available"] is torch.cuda.is_available()


def test_absent_packages_are_left_out() -> None:
    versions = package_versions(("rfc8785", "surely-not-an-installed-distribution-xyz"))
    assert set(versions) == {"rfc8785"}
