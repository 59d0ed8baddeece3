"""Missing optional extras: one line with the install command and exit 2; ``--help`` lists the extras.

A module is made "not installed" the way Python itself treats it, ``sys.modules[name] = None``. The same
behaviour in a real core-only install is tested in tests/test_packaging.py.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cli_runner import run

from bastion import extras
from bastion.errors import BastionError, MissingExtraError

REPO = Path(__file__).resolve().parents[2]
TORCH_HINT = (
    "pip install torch==2.13.0 (the CPU build; where your index serves only CUDA builds, "
    "add --index-url https://download.pytorch.org/whl/cpu)"
)


def uninstall(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_every_extra_in_pyproject_has_a_row() -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert set(extras.EXTRAS) == set(declared) - {"dev"}


def test_gateway_without_uvicorn_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uninstall(monkeypatch, "uvicorn")
    code, out, err = run(capsys, "gateway", "--policy", "pack:eu-gdpr")
    assert code == 2 and out == ""
    assert err == (
        "error: bastion gateway needs uvicorn, which is not installed: pip install 'bastion-provenance[gateway]'\n"
    )


def test_demo_without_torch_gives_the_cpu_wheel_command_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    uninstall(monkeypatch, "torch")
    code, _, err = run(capsys, "demo", "--output-dir", str(tmp_path / "demo"))
    assert code == 2
    assert err == f"error: bastion demo needs torch, which is not installed: {TORCH_HINT}\n"
    assert not (tmp_path / "demo").exists()


def test_torch_and_the_extra_missing_name_both_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    uninstall(monkeypatch, "torch", "peft")
    code, _, err = run(capsys, "demo", "--output-dir", str(tmp_path / "demo"))
    assert code == 2
    assert err == (
        f"error: bastion demo needs torch, peft, which are not installed: {TORCH_HINT}; "
        "then pip install 'bastion-provenance[hf]'\n"
    )


def test_help_lists_extras_as_installed_or_missing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uninstall(monkeypatch, "starlette")
    code, out, _ = run(capsys, "--help")
    assert code == 0
    section = out.split("Extras (pip install 'bastion-provenance[NAME]'):\n", 1)[1]
    rows = dict(line.split()[:2] for line in section.splitlines() if line.strip())
    assert set(rows) == set(extras.EXTRAS)
    assert rows["hf"] == "installed"  # the test environment has [hf] and torch
    assert rows["gateway"] == rows["gateway-fast"] == "missing"


def test_help_imports_no_extra_and_no_command_module() -> None:
    code = (
        "import sys\n"
        "from bastion.cli.main import main\n"
        "try:\n    main(['-h'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'torch', 'transformers', 'starlette', 'uvicorn', 'bastion.cli.demo', 'bastion.cli.gateway'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.rstrip().endswith("[]")
    assert "Extras (pip install" in out


def test_public_import_raises_missing_extra_error_which_is_an_import_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import bastion.plugins.hf as hf

    uninstall(monkeypatch, "trl")
    with pytest.raises(ImportError) as info:
        hf.BastionCallback  # noqa: B018 (the lazy import is the point)
    error = info.value
    assert isinstance(error, MissingExtraError) and isinstance(error, BastionError)
    assert error.extra == "hf" and error.name == "trl"
    assert str(error) == (
        "bastion.plugins.hf.BastionCallback needs trl, which is not installed: pip install 'bastion-provenance[hf]'"
    )


def test_importing_the_gateway_without_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    uninstall(monkeypatch, "prometheus_client")
    for name in [m for m in sys.modules if m == "bastion.gateway" or m.startswith("bastion.gateway.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingExtraError, match=r"^bastion.gateway needs prometheus-client, which is not installed: "):
        importlib.import_module("bastion.gateway.app")


def test_a_module_not_found_maps_to_its_extra_only_when_it_is_really_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    uninstall(monkeypatch, "hyperscan")
    error = extras.missing_extra(ModuleNotFoundError(name="hyperscan"), feature="bastion scan")
    assert error is not None and error.extra == "fast"
    assert str(error) == "bastion scan needs hyperscan, which is not installed: pip install 'bastion-provenance[fast]'"
    # No extra's module, or an installed package that lacks a submodule (a version problem): keep the original.
    assert extras.missing_extra(ModuleNotFoundError(name="no_such_module"), feature="x") is None
    assert extras.missing_extra(ModuleNotFoundError(name="bastion.nothing"), feature="x") is None
    assert extras.missing_extra(ModuleNotFoundError(name="transformers.no_such_model"), feature="x") is None


def test_a_command_that_imports_an_extra_late_gets_the_same_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The net in ``main``: a ModuleNotFoundError of an extra's module while a command runs."""
    from bastion.cli import main as cli_main

    def scan_needing_hyperscan() -> None:
        import hyperscan  # noqa: F401

    monkeypatch.setitem(cli_main.COMMANDS, "fastscan", ("tests_extras_cmd:command", "late import"))
    module = type(sys)("tests_extras_cmd")
    module.command = cli_main.click.Command("fastscan", callback=scan_needing_hyperscan)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tests_extras_cmd", module)
    uninstall(monkeypatch, "hyperscan")
    code, _, err = run(capsys, "fastscan")
    assert code == 2
    assert err == (
        "error: bastion fastscan needs hyperscan, which is not installed: pip install 'bastion-provenance[fast]'\n"
    )
