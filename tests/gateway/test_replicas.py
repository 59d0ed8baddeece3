"""Which audit log a replica or worker writes (gateway/replicas.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.gateway import replicas
from bastion.gateway.config import config_from_mapping


def config(tmp_path: Path, **gateway: object):  # type: ignore[no-untyped-def]
    up = {"openai": {"base_url": "http://127.0.0.1:9", "jurisdiction": "US"}}
    return config_from_mapping({"upstreams": up, "gateway": {"state_dir": str(tmp_path), **gateway}})


def test_each_replica_and_worker_has_its_own_dir(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert replicas.audit_path_for(cfg, "gw-a") == tmp_path / "audit" / "gw-a" / "audit.jsonl"
    assert replicas.worker_audit_path(cfg, "gw-a", 1) == tmp_path / "audit" / "gw-a.w1" / "audit.jsonl"


def test_an_explicit_audit_log_is_kept_and_workers_get_subdirs(tmp_path: Path) -> None:
    cfg = config(tmp_path, audit_log=str(tmp_path / "logs" / "decisions.jsonl"))
    assert replicas.audit_path_for(cfg, "gw-a") == tmp_path / "logs" / "decisions.jsonl"
    assert replicas.worker_audit_path(cfg, "gw-a", 0) == tmp_path / "logs" / "w0" / "decisions.jsonl"


def test_default_replica_id_is_a_safe_directory_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replicas.socket, "gethostname", lambda: "web/01 (prod).bank.example")
    assert replicas.default_replica_id(8088) == "web-01--prod-8088"
    monkeypatch.setattr(replicas.socket, "gethostname", lambda: "...")
    assert replicas.default_replica_id(1) == "gateway-1"


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 65])
def test_unusable_replica_ids_are_refused(bad: str) -> None:
    with pytest.raises(ConfigError, match="is not usable as a directory name"):
        replicas.check_replica_id(bad)
