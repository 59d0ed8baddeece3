"""The distribution installs everything under the single ``bastion`` namespace."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAPPED = ("provenance", "plugins", "gateway", "adapters", "policies", "cli")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
    )
    (whl,) = out.glob("bastion_provenance-*.whl")
    return whl


def test_wheel_has_only_the_bastion_namespace(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"bastion"}
    for folder in MAPPED:
        assert f"bastion/{folder}/__init__.py" in names
    assert "bastion/py.typed" in names


def test_wheel_ships_package_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("bastion/policies/") and n.endswith(".yaml") for n in names), "policy packs missing"


@pytest.mark.slow
def test_wheel_and_editable_install_in_fresh_venv(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "-q", str(wheel)], check=True, capture_output=True)
    code = (
        "import bastion.provenance, bastion.plugins, bastion.gateway, bastion.policies;"
        "bastion.policies.load_policy('pack:eu-gdpr');"
        "print(bastion.provenance.__file__)"
    )
    out = subprocess.run([py, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert "site-packages/bastion/provenance/__init__.py" in out
    site = next((env_dir / "lib").glob("python3*/site-packages"))
    for generic in MAPPED:
        assert not (site / generic).exists(), f"generic top-level module {generic!r} installed"

    subprocess.run(
        [py, "-m", "pip", "install", "-q", "--no-deps", "-e", str(REPO)],
        check=True,
        capture_output=True,
    )
    out = subprocess.run([py, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert out.strip() == str(REPO / "provenance" / "__init__.py")
