"""The gateway's persistent state: admitted files/objects, idempotency results, held uploads and parts.

``open_state_store(settings)`` opens the configured backend (SQLite in ``gateway.state_dir`` by
default). See :class:`StateStore` for the interface and ``store.py`` for the concurrency model.
"""

from __future__ import annotations

import base64
import binascii
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from bastion.gateway.state.errors import StateConflict, StateError
from bastion.gateway.state.models import Admitted, Completion, HeldPart, HeldUpload, IdemBegin, PartBlob
from bastion.gateway.state.parts import EncryptedPartStore, PartWriter
from bastion.gateway.state.protocol import StateStore
from bastion.gateway.state.sqlite import open_sqlite_store, prepare_state_dir
from bastion.gateway.state.store import SQLStateStore

SPOOL_DIR = "spool"


def part_key_from_env(name: str | None) -> bytes | None:
    """The 32-byte held-part key from the environment variable ``name`` (64 hex digits or base64), or None."""
    if not name:
        return None
    text = os.environ.get(name, "").strip()
    if not text:
        raise StateError(
            f"gateway.part_key_env names ${name}, which is not set",
            hint=f"export {name}=$(python -c 'import secrets; print(secrets.token_hex(32))')",
        )
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise StateError(f"${name} must hold a 32-byte key as 64 hex digits or base64 (the value is not shown)")
    return key


def clean_spool_dir(spool_dir: Path) -> int:
    """Start-up: remove every leftover spool file (interrupted uploads); returns how many were removed."""
    if not spool_dir.exists():
        return 0
    removed = 0
    for p in spool_dir.iterdir():
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise StateError(f"cannot remove the leftover spool file {p}: {exc.strerror or exc}") from None
    return removed


def open_state_store(
    state_dir: Path,
    *,
    part_key_env: str | None = None,
    lease_s: float = 30.0,
    idempotency_ttl_s: float = 24 * 3600.0,
    clock: Callable[[], float] = time.time,
) -> SQLStateStore:
    """The configured store (SQLite in ``state_dir``), after start-up clean-up of stale parts."""
    return open_sqlite_store(
        state_dir,
        part_key=part_key_from_env(part_key_env),
        lease_s=lease_s,
        idempotency_ttl_s=idempotency_ttl_s,
        clock=clock,
    )


__all__ = [
    "SPOOL_DIR",
    "Admitted",
    "Completion",
    "EncryptedPartStore",
    "HeldPart",
    "HeldUpload",
    "IdemBegin",
    "PartBlob",
    "PartWriter",
    "SQLStateStore",
    "StateConflict",
    "StateError",
    "StateStore",
    "clean_spool_dir",
    "open_sqlite_store",
    "open_state_store",
    "part_key_from_env",
    "prepare_state_dir",
]
