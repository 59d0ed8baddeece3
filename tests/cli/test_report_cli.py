"""`bastion report` through the real entry point: outputs, exit statuses, clear errors, no partial files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cli_runner import run

from bastion.provenance.signing import KeyPair, generate_key_pair, sign_run
from bastion.provenance.signing.testing import make_run_dir


@pytest.fixture
def keys(tmp_path: Path) -> KeyPair:
    return generate_key_pair(tmp_path / "keys")


@pytest.fixture
def signed_run(tmp_path: Path, keys: KeyPair) -> Path:
    out = make_run_dir(tmp_path / "out")
    sign_run(out, {"backend": "key", "private_key": str(keys.private_key)})
    return out


def test_writes_html_json_and_mlbom(
    capsys: pytest.CaptureFixture[str], signed_run: Path, keys: KeyPair, tmp_path: Path
) -> None:
    exports = tmp_path / "exports"
    exports.mkdir()
    html, js, bom = exports / "report.html", exports / "report.json", exports / "bom.json"
    code, out, err = run(
        capsys,
        "report",
        str(signed_run),
        "--key",
        str(keys.public_key),
        "--out",
        str(html),
        "--json",
        str(js),
        "--mlbom",
        str(bom),
    )
    assert code == 0, err
    assert out.startswith("OK run run-0001 verifies") and str(html) in out
    content = json.loads(js.read_text(encoding="utf-8"))
    assert content["verification"]["ok"] and content["run"]["run_id"] == "run-0001"
    page = html.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "run-0001" in page and "VERIFIED: every check passed" in page
    assert json.loads(bom.read_text(encoding="utf-8"))["bomFormat"] == "CycloneDX"
    assert stat.S_IMODE(html.stat().st_mode) & 0o044  # readable by others (umask permitting), unlike mkstemp's 0600
    assert sorted(p.name for p in exports.iterdir()) == ["bom.json", "report.html", "report.json"]


def test_failed_verification_writes_the_report_and_exits_1(
    capsys: pytest.CaptureFixture[str], signed_run: Path, keys: KeyPair, tmp_path: Path
) -> None:
    (signed_run / "unsigned.bin").write_bytes(b"added after signing")
    js = tmp_path / "report.json"
    code, out, _err = run(capsys, "report", str(signed_run), "--key", str(keys.public_key), "--json", str(js))
    assert code == 1
    assert "FAILED run run-0001 does not verify" in out and "FAIL subject.extra: unsigned.bin" in out
    assert [f["check"] for f in json.loads(js.read_text(encoding="utf-8"))["verification"]["failures"]] == [
        "subject.extra"
    ]


def test_bad_arguments_are_clear_and_write_nothing(
    capsys: pytest.CaptureFixture[str], signed_run: Path, keys: KeyPair, tmp_path: Path
) -> None:
    code, _out, err = run(capsys, "report", str(signed_run))
    assert code == 2 and "nothing to write" in err and "--out report.html" in err

    html = tmp_path / "report.html"
    code, _out, err = run(capsys, "report", str(tmp_path / "missing"), "--out", str(html))
    assert code == 2 and "path not found" in err and "Traceback" not in err
    assert not html.exists()

    code, _out, err = run(capsys, "report", str(signed_run), "--key", str(tmp_path / "no.pub"), "--out", str(html))
    assert code == 2 and "no.pub" in err and not html.exists()

    code, _out, err = run(
        capsys, "report", str(signed_run), "--out", str(tmp_path / "no-such-dir" / "r.html"), "--json", str(html)
    )
    assert code == 2 and "does not exist" in err and "no-such-dir" in err
    assert "Traceback" not in err
