"""Helpers of the state-store tests: record builders and file searches."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bastion.gateway.state import HeldPart, HeldUpload, SQLStateStore

StoreFactory = Callable[..., SQLStateStore]
"""Opens a store on the test's one shared location (same database, same parts): ``open_store(**options)``."""

PII = b"jane.roe@example.org DE89370400440532013000 +49 30 901820"


def now() -> datetime:
    return datetime.now(UTC)


def new_upload(upload_id: str = "upload_gw_1", *, ttl: timedelta = timedelta(hours=1)) -> HeldUpload:
    t = now()
    return HeldUpload(
        upload_id=upload_id,
        upstream="openai",
        client="sha256:0123456789abcdef",
        purpose="fine-tune",
        filename="train.jsonl",
        mime_type="text/jsonl",
        bytes=2 * len(PII),
        created_at=t,
        expires_at=t + ttl,
        meta={"expires_after": {"anchor": "created_at", "seconds": 3600}},
    )


def add_part(store: SQLStateStore, upload_id: str, data: bytes, part_id: str | None = None) -> HeldPart:
    blob = store.parts.put(data)
    part = HeldPart(part_id or "part_" + secrets.token_hex(6), blob.size, blob.sha256, blob.handle, now())
    store.upload_add_part(upload_id, part)
    return part


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def contains(root: Path, needle: bytes) -> list[Path]:
    """Files under ``root`` whose bytes contain ``needle`` (the PII must be in none)."""
    return [p for p in files_under(root) if needle in p.read_bytes()]
