"""The distribution installs everything under the single ``bastion`` namespace."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from bastion.extras import EXTRAS

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
        "import bastion.provenance, bastion.plugins, bastion.cli, bastion.policies;"
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


# --- A core-only install: commands and imports that need an extra say which one, in one line, exit 2 ---

CPU_TORCH = (
    "pip install torch==2.13.0 (the CPU build; where your index serves only CUDA builds, "
    "add --index-url https://download.pytorch.org/whl/cpu); then pip install 'bastion-provenance[hf]'"
)


@pytest.fixture(scope="module")
def core_bin(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bin/`` of a fresh venv holding the wheel and its core dependencies only (no extra)."""
    env_dir = tmp_path_factory.mktemp("core") / "venv"
    venv.create(env_dir, with_pip=True)
    pip = [env_dir / "bin" / "python", "-m", "pip", "install", "-q", str(wheel)]
    subprocess.run(pip, check=True, capture_output=True)
    return env_dir / "bin"


def bastion(core_bin: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([core_bin / "bastion", *args], capture_output=True, text=True, cwd=cwd, check=False)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "needs", "install"),
    [
        (
            ["gateway", "--policy", "pack:eu-gdpr"],
            "bastion gateway needs starlette, uvicorn, ",
            "pip install 'bastion-provenance[gateway]'",
        ),
        (["demo", "--output-dir", "demo"], "bastion demo needs torch, transformers, ", CPU_TORCH),
        (
            ["llamafactory", "train", "x.yaml"],
            "bastion llamafactory train needs llamafactory, which is not installed: ",
            "pip install 'bastion-provenance[llamafactory]'; the tested stack",
        ),
    ],
    ids=["gateway", "demo", "llamafactory"],
)
def test_core_only_command_needing_an_extra_says_which_in_one_line(
    core_bin: Path, tmp_path: Path, args: list[str], needs: str, install: str
) -> None:
    result = bastion(core_bin, tmp_path, *args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {needs}"), line
    assert install in line
    assert list(tmp_path.iterdir()) == [], "nothing may be written before the check"


@pytest.mark.slow
def test_core_only_imports_needing_an_extra_raise_missing_extra_error(core_bin: Path, tmp_path: Path) -> None:
    imports = {
        "from bastion.plugins.hf import BastionCallback": "hf",
        "from bastion.plugins.hf import build_tiny_model": "hf",
        "from bastion.plugins.unsloth import track": "hf",
        "from bastion.plugins.axolotl import BastionPlugin": "axolotl",
        "from bastion.plugins.llamafactory import run_exp": "llamafactory",
        "import bastion.gateway": "gateway",
        "from bastion.gateway.app import create_gateway": "gateway",
        "import bastion.adapters": "gateway",
        # The core parts of the plugin packages import without any extra.
        "from bastion.plugins.axolotl import BastionArgs": None,
        "from bastion.plugins.llamafactory import read_config, BastionSettings": None,
        "from bastion.plugins.unsloth import resolve_base_model": None,
        "from bastion import verify": None,
    }
    script = (
        "import json, sys\n"
        "from bastion.errors import MissingExtraError\n"
        "for stmt in sys.argv[1:]:\n"
        "    try:\n"
        "        exec(stmt)\n"
        "        print(json.dumps([stmt, None, '']))\n"
        "    except ImportError as exc:\n"
        "        extra = exc.extra if isinstance(exc, MissingExtraError) else type(exc).__name__\n"
        "        print(json.dumps([stmt, extra, str(exc)]))\n"
    )
    run = [core_bin / "python", "-c", script, *imports]
    out = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path, check=True).stdout
    got = {stmt: (extra, message) for stmt, extra, message in map(json.loads, out.splitlines())}
    assert {stmt: extra for stmt, (extra, _) in got.items()} == imports
    for stmt, (extra, message) in got.items():
        assert "\n" not in message
        assert extra is None or f"'bastion-provenance[{extra}]'" in message, stmt
    assert got["from bastion.plugins.hf import BastionCallback"][1].startswith(
        "bastion.plugins.hf.BastionCallback needs torch, transformers, "
    )


@pytest.mark.slow
def test_core_only_help_lists_every_extra_as_missing(core_bin: Path, tmp_path: Path) -> None:
    result = bastion(core_bin, tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    section = result.stdout.split("Extras (pip install 'bastion-provenance[NAME]'):\n", 1)[1]
    rows = dict(line.split()[:2] for line in section.splitlines() if line.startswith("  ") and line.split())
    assert rows == dict.fromkeys(EXTRAS, "missing")


@pytest.mark.slow
def test_core_only_commands_work_without_any_extra(core_bin: Path, tmp_path: Path) -> None:
    """keygen, sign, verify, inspect, ledger, hash, registry, lineage, scan and policy need no extra; nor --help."""
    make = "import sys; from bastion.provenance.signing.testing import make_run_dir; make_run_dir(sys.argv[1])"
    subprocess.run([core_bin / "python", "-c", make, "run"], check=True, capture_output=True, cwd=tmp_path)
    record = {"messages": [{"role": "user", "content": "I'm ana@example.es"}]}
    (tmp_path / "data.jsonl").write_text(json.dumps(record) + "\n", encoding="utf-8")
    steps: list[tuple[list[str], str]] = [
        (["keygen", "--out", "keys"], ""),
        (["sign", "run", "--key", "keys/signing.pem"], ""),
        (["verify", "run", "--key", "keys/signing.pub"], "OK run: "),
        (["inspect", "run"], ""),
        (["ledger", "verify", "run/bastion/ledger.jsonl"], ""),
        (["hash", "run", "--json"], "{"),
        (["policy", "check", "pack:eu-gdpr"], ""),
        (["policy", "packs"], ""),
        # The help of the commands that need an extra is there without it.
        (["gateway", "--help"], "Usage: bastion gateway "),
        (["demo", "--help"], "Usage: bastion demo "),
        (["llamafactory", "train", "--help"], "Usage: bastion llamafactory train "),
        # The run registry on SQLite needs no extra either.
        (["registry", "add", "run", "--db", "reg.sqlite3", "--key", "keys/signing.pub"], "ADDED "),
        (["lineage", "dataset", "a" * 64, "--db", "reg.sqlite3"], "dataset " + "a" * 64 + ": used by 1 run(s)"),
        (["scan", "data.jsonl", "--policy", "pack:eu-gdpr", "--json"], "{"),
    ]
    for args, starts in steps:
        result = bastion(core_bin, tmp_path, *args)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stdout.startswith(starts), (args, result.stdout)
        assert "Traceback" not in result.stderr and "not installed" not in result.stderr, (args, result.stderr)
    assert json.loads(result.stdout)["decision"] == "redact"
