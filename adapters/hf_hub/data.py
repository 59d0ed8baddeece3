"""What a Hugging Face dataset commit may carry, and how each kind of file is scanned.

Path rule (one rule for preupload, commit and LFS): a file is

- ``jsonl``: a path ending in ``.jsonl``: one JSON object per line, every record scanned by the policy
  engine (redaction rewrites the record, a block refuses the whole commit);
- ``parquet``: a path ending in ``.parquet``: read with pyarrow, every row scanned; Parquet is allowed or
  blocked, never rewritten (a row the policy would redact refuses the file: redact it locally first);
- ``text``: ``README.md``, ``.gitattributes`` or ``.gitignore`` at the repository root (the dataset card
  and the repository's own settings): the whole text is scanned as one record, redacted or blocked;
- anything else (``.csv``, ``.json``, ``.txt``, archives, images, files in other places) is refused: the
  gateway only forwards what it can scan.

Errors name the file by its position and kind, never by its name or content.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterator
from typing import Any, BinaryIO, Literal

from bastion.gateway.errors import Refusal

Kind = Literal["jsonl", "parquet", "text"]
TEXT_FILES = frozenset({"README.md", ".gitattributes", ".gitignore"})
_SEGMENT = re.compile(r"[A-Za-z0-9_.=+@,-][A-Za-z0-9 _.=+@,-]{0,254}")
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,10}")
PARQUET_MAGIC = b"PAR1"


def path_kind(path: Any, where: str) -> Kind:
    """The kind of file at ``path`` (see the module doc), or a refusal that says why it is not forwarded."""
    if not isinstance(path, str) or not 0 < len(path) <= 1024:
        raise Refusal(400, "invalid_commit", f"{where}: 'path' must be a non-empty string of at most 1024 characters")
    segments = path.split("/")
    if any(s in ("", ".", "..") or _SEGMENT.fullmatch(s) is None for s in segments):
        raise Refusal(
            400,
            "invalid_commit",
            f"{where}: 'path' must be a relative path of plain names (letters, digits, ' _.=+@,-'), "
            "without empty, '.' or '..' segments",
        )
    if path in TEXT_FILES:
        return "text"
    if path.endswith(".jsonl"):
        return "jsonl"
    if path.endswith(".parquet"):
        return "parquet"
    suffix = path[path.rfind(".") :] if "." in segments[-1] else ""
    shown = f" (a '{suffix}' file)" if _SUFFIX.fullmatch(suffix) else ""
    raise Refusal(
        403,
        "file_type_not_allowed",
        f"{where}{shown} is not a file this gateway scans: dataset uploads carry JSONL (.jsonl) and Parquet "
        "(.parquet) data files, plus README.md, .gitattributes and .gitignore at the repository root",
        hint="convert the data to JSONL or Parquet; the gateway forwards only what it can scan",
    )


def neutral_sample(sample: Any, where: str) -> str:
    """A preupload ``sample`` the gateway writes: the same length and the same text/binary class, no client bytes.

    The Hub reads the sample only to tell text from binary (which decides regular vs LFS with the size and
    .gitattributes); the first bytes of a data file are data, so they are not forwarded.
    """
    raw = b64decode(sample, f"{where}.sample", limit=4096)
    binary = b"\x00" in raw
    if not binary:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            binary = True
    return base64.b64encode((b"\x00" if binary else b" ") * len(raw)).decode("ascii")


def b64decode(value: Any, where: str, *, limit: int) -> bytes:
    if not isinstance(value, str):
        raise Refusal(400, "invalid_commit", f"{where} must be a base64 string")
    if len(value) > (limit + 2) // 3 * 4:
        raise Refusal(413, "upload_too_large", f"{where} is larger than this gateway's limit of {limit} bytes")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Refusal(400, "invalid_commit", f"{where} is not valid base64") from None


# -- Parquet ------------------------------------------------------------------------------------------
def _scannable(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")  # binary columns often hold text
    if isinstance(value, dict):
        return {str(k): _scannable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scannable(v) for v in value]
    return value


def parquet_rows(source: str | bytes | BinaryIO, where: str) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet file (a path, its bytes or a seekable file), refusing what pyarrow cannot read."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise Refusal(
            403,
            "file_type_not_allowed",
            f"{where} is a Parquet file, and this gateway cannot read Parquet (pyarrow is not installed), "
            "so it is refused",
            hint="upload JSONL instead, or ask the operator to install bastion-provenance[hub]",
        ) from None
    try:
        pf = pq.ParquetFile(io.BytesIO(source) if isinstance(source, bytes) else source)
        for batch in pf.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield _scannable(row)
    except (pa.ArrowException, OSError, ValueError):
        raise Refusal(
            400, "invalid_upload", f"{where} is not a Parquet file pyarrow can read (corrupt or truncated)"
        ) from None


def scan_parquet(engine: Any, source: str | bytes | BinaryIO, where: str) -> dict[str, Any]:
    """Scan every row; the facts the audit log keeps (as :func:`bastion.gateway.scan.summary_facts`), no data."""
    records = redacted = 0
    blocked: list[int] = []
    counts: dict[str, dict[str, int]] = {}
    rules: set[str] = set()
    classification: str | None = None
    for i, row in enumerate(parquet_rows(source, where), start=1):
        res = engine.scan_record(row, i)
        records += 1
        for f in res.findings:
            per = counts.setdefault(f.entity, {})
            per[f.action] = per.get(f.action, 0) + 1
            if f.action != "allow":
                rules.add(f.rule_id)
        if res.action == "block":
            blocked.append(i)
        elif res.changed:
            redacted += 1
        if res.classification is not None and (
            classification is None or engine.rank(res.classification) > engine.rank(classification)
        ):
            classification = res.classification
    decision = "block" if blocked else "redact" if redacted else "allow"
    return {
        "scan_decision": decision,
        "records": records,
        "redacted_records": redacted,
        "blocked_records_total": len(blocked),
        "blocked_records": blocked[:1000],
        "counts": {e: dict(sorted(p.items())) for e, p in sorted(counts.items())},
        "rule_ids": sorted(rules),
        "classification": classification or engine.policy.default_classification,
    }


def parquet_not_rewritten(where: str, facts: dict[str, Any]) -> Refusal:
    return Refusal(
        403,
        "redaction_not_supported",
        f"{where} is a Parquet file with personal data the policy redacts; the gateway does not rewrite Parquet "
        "files, so it is refused and nothing was forwarded",
        rule_ids=facts["rule_ids"],
        entity_types=sorted(facts["counts"]),
        hint="upload the data as JSONL (the gateway redacts JSONL records), or remove the personal data first",
    )
