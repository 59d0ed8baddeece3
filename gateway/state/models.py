"""The typed values the state store keeps: admitted files/objects, held uploads and parts, idempotency results.

Every string in here is either gateway-made (ids, digests, fingerprints) or was scanned/validated by
the gateway before it is stored: the store never sees raw client text.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal


def utc(ts_ms: int) -> datetime:
    return datetime.fromtimestamp(ts_ms / 1000, UTC)


def to_ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("state store times must be timezone-aware (UTC)")
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class Admitted:
    """A file or object the gateway scanned and forwarded, bound to the upstream AND the admitting client."""

    upstream: str
    ref: str  # the upstream's file id or object key
    client: str  # credential fingerprint (sha256:<16 hex>) or "anonymous"
    decision: str  # "allow" | "redact"
    classification: str | None
    input_sha256: str
    output_sha256: str
    records: int
    policy: str
    purpose: str | None
    admitted_at: datetime


UploadState = Literal["open", "completing", "completed"]


@dataclass(frozen=True)
class HeldUpload:
    """An Uploads-API upload whose parts the gateway holds until ``/complete``.

    ``meta`` is adapter-specific JSON (validated/scanned values only). ``state`` and ``result`` are
    maintained by the store: give the defaults to :meth:`StateStore.upload_create`.
    """

    upload_id: str  # gateway-made
    upstream: str
    client: str
    purpose: str
    filename: str  # already scanned and sanitised by the gateway
    mime_type: str
    bytes: int
    created_at: datetime
    expires_at: datetime
    meta: Mapping[str, Any] = field(default_factory=dict)
    state: UploadState = "open"
    result: builtins.bytes | None = None
    upstream_upload_id: str | None = None


@dataclass(frozen=True)
class PartBlob:
    """Where an encrypted part's bytes are (``handle``, a gateway-made name) and what they are."""

    handle: str
    size: int
    sha256: str


@dataclass(frozen=True)
class HeldPart:
    """One part of a held upload: gateway-made id, size, digest and a handle into the EncryptedPartStore."""

    part_id: str
    size: int
    sha256: str
    blob: str  # PartBlob.handle
    created_at: datetime


@dataclass(frozen=True)
class IdemBegin:
    """What :meth:`StateStore.idempotency_begin` decided.

    ``outcome``:
      - ``proceed``: this caller forwards; it must call ``idempotency_finish`` or ``idempotency_abandon``
      - ``in_progress``: another request with the key is being forwarded now (answer 409, retry later)
      - ``replay``: the key was used before for the same request; answer with ``status/headers/body``
      - ``mismatch``: the key was used before for a DIFFERENT request (answer 422-style, never forward)
    """

    outcome: Literal["proceed", "in_progress", "replay", "mismatch"]
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes | None = None

    @property
    def proceed(self) -> bool:
        return self.outcome == "proceed"

    @property
    def in_progress(self) -> bool:
        return self.outcome == "in_progress"

    @property
    def replay(self) -> bool:
        return self.outcome == "replay"

    @property
    def mismatch(self) -> bool:
        return self.outcome == "mismatch"


@dataclass(frozen=True)
class Completion:
    """Inside ``upload_completing``: the upload, and its stored result if it was completed before.

    ``result is None``: this caller holds the completion and must complete upstream, then call
    ``upload_set_result``. Otherwise answer with ``result`` (idempotent ``/complete``).
    """

    upload: HeldUpload
    result: bytes | None
    upstream_upload_id: str | None

    @property
    def completed(self) -> bool:
        return self.result is not None
