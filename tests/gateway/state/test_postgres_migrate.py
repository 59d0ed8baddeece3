"""Schema migrations on PostgreSQL: versioned, idempotent, safe when several replicas start at once;
``bastion gateway migrate`` runs them (and, once, drops held uploads for a key change)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pg_support import PostgresBackend
from state_support import PII, add_part, new_upload

from bastion.cli.main import main
from bastion.gateway.state import open_sqlite_store
from bastion.gateway.state.schema import LATEST, MIGRATIONS

MIGRATOR = (
    "import sys\n"
    "from bastion.gateway.state import migrate_state\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()\n"
    "print(migrate_state(sys.argv[1]), flush=True)\n"
)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_processes_migrating_at_once_apply_each_version_once(pg_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATOR, pg_url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        for p in procs:  # all released together: they race for the same empty schema
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = sorted(p.communicate(timeout=120)[0].strip() for p in procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0]
    # one process applied everything; the others waited on the advisory lock and found it current
    assert results == sorted([f"(0, {LATEST})", f"({LATEST}, {LATEST})", f"({LATEST}, {LATEST})"])
    rows = PostgresBackend(pg_url).sql("SELECT version, name FROM bastion_schema ORDER BY version")
    assert rows == [(v, name) for v, name, _ in MIGRATIONS]


def test_migrate_command(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "gateway", "migrate", "--state", pg_url)
    assert (code, err) == (0, "")
    assert out.startswith("state store postgresql://postgres@") and out.endswith(f"schema version 0 -> {LATEST}\n")
    assert "options=" not in out  # the URL is shown without its query (and would be without a password)
    code, out, _ = run_cli(capsys, "gateway", "migrate", "--state", pg_url)
    assert code == 0 and out.endswith(f"schema already at version {LATEST}\n")


def test_migrate_command_drops_held_uploads_for_a_key_change(pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    pg = PostgresBackend(pg_url)
    try:
        old = pg.open(part_key=b"o" * 32)
        up = new_upload()
        old.upload_create(up)
        add_part(old, up.upload_id, PII)
        add_part(old, up.upload_id, PII)
        old.close()
        with pytest.raises(Exception, match="sealed under another key"):
            pg.open(part_key=b"n" * 32)
        code, out, _ = run_cli(capsys, "gateway", "migrate", "--state", pg_url, "--drop-held-uploads")
        assert code == 0 and out.endswith("dropped 1 held uploads and 2 held parts\n")
        new = pg.open(part_key=b"n" * 32)  # starts now
        assert new.upload_get(up.upload_id) is None
        assert pg.sql("SELECT COUNT(*) FROM part_chunks") == [(0,)]
    finally:
        pg.close_all()


def test_migrate_command_without_a_server_is_one_line(capsys: pytest.CaptureFixture[str], pg_url: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, out, err = run_cli(capsys, "gateway", "migrate", "--state", f"postgresql://postgres@127.0.0.1:{port}/x")
    assert code == 2 and out == ""
    first, hint = err.rstrip("\n").split("\n")
    assert first.startswith(f"error: state database postgresql://postgres@127.0.0.1:{port}/x is unavailable: ")
    assert hint.startswith("  hint: ")


def test_migrate_command_on_a_sqlite_state_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "gateway", "migrate", "--state", f"sqlite:///{tmp_path}/st")
    assert code == 0 and out == f"state store {tmp_path}/st: schema version 0 -> {LATEST}\n"
    s = open_sqlite_store(tmp_path / "st", part_key=b"k" * 32)
    up = new_upload()
    s.upload_create(up)
    add_part(s, up.upload_id, PII)
    code, _, err = run_cli(capsys, "gateway", "migrate", "--state", str(tmp_path / "st"), "--drop-held-uploads")
    assert code == 2 and "another gateway process uses the held-part directory" in err  # refused while in use
    s.close()
    code, out, _ = run_cli(capsys, "gateway", "migrate", "--state", str(tmp_path / "st"), "--drop-held-uploads")
    assert code == 0 and out.endswith("dropped 1 held uploads and 1 held parts\n")
    assert sorted(p.name for p in (tmp_path / "st" / "parts").iterdir()) == [".lock"]
