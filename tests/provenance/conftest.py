"""Fixtures shared by the signing and verification tests: real keys, a real CA hierarchy, run directories."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.provenance.signing import KeyPair, generate_key_pair
from bastion.provenance.signing.testing import TestPKI, make_run_dir, make_test_pki

MODEL_SIGNING_CLI = str(Path(sys.executable).parent / "model_signing")


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_key_pair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_key_pair(tmp_path_factory.mktemp("other-keys"))


@pytest.fixture
def run_dir(tmp_path: Path) -> Callable[..., Path]:
    """``run_dir(name="out", **make_run_dir_kwargs)``: a fresh unsigned output directory."""

    def make(name: str = "out", **kwargs: object) -> Path:
        return make_run_dir(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def stock_verify() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the stock OpenSSF ``model_signing verify`` CLI exactly as a deploy pipeline would."""
    assert shutil.which(MODEL_SIGNING_CLI), "model_signing CLI missing from the venv"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MODEL_SIGNING_CLI, "verify", *args], capture_output=True, text=True, timeout=120)

    return run
