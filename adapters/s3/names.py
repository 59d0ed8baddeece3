"""How the ledger names one version of an S3 object."""

from __future__ import annotations


def ledger_ref(uri: str, etag: str) -> str:
    """``s3://bucket/key#<ETag>``: the object's URI and the ETag S3 gave that version."""
    return uri + "#" + etag.strip('"')


__all__ = ["ledger_ref"]
