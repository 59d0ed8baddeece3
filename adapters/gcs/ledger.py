"""The ledger of Cloud Storage objects this gateway scanned and wrote, one entry per object generation.

Objects are kept in the state store as :class:`~bastion.gateway.state.Admitted` entries of the GCS
upstream that wrote them: ``ref`` is ``gs://{bucket}/{name}#{generation}``, ``purpose`` is
``gcs-object``. Vertex AI tuning jobs (``bastion.adapters.vertex``) ask Cloud Storage for the object's
*current* generation at job time and look that up here, so an object overwritten, copied, rewritten or
composed outside the gateway (a new generation) is not taken for the scanned one.

An object is not bound to the client credential that wrote it: Google OAuth access tokens rotate
hourly, and who may read the bucket is Cloud Storage's IAM decision; what the ledger answers is whether
the bytes of that generation were scanned by this gateway.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from bastion.adapters.openai import steps
from bastion.gateway.state import Admitted

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway

PURPOSE = "gcs-object"
PROVIDER = "gcs"
BUCKET = r"[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]"
#: gs://bucket/object (object: 1-1024 bytes of UTF-8 without control characters, no "#" or "?" here)
GS_URI = re.compile(rf"gs://(?P<bucket>{BUCKET})/(?P<name>[^\x00-\x1f\x7f#?*\[\]]{{1,1024}})")


def object_ref(bucket: str, name: str, generation: str | None = None) -> str:
    return f"gs://{bucket}/{name}" + (f"#{generation}" if generation else "")


def remember(
    gw: Gateway, ex: Exchange, bucket: str, name: str, generation: str, facts: dict[str, Any], decision: str
) -> None:
    """Record a written object generation."""
    steps.remember(gw, ex, object_ref(bucket, name, generation), facts, decision, PURPOSE)


def gcs_upstreams(gw: Gateway) -> list[str]:
    return sorted(name for name, spec in gw.specs.items() if spec.name == PROVIDER)


def lookup(gw: Gateway, bucket: str, name: str, generation: str) -> Admitted | None:
    """The admission of that object generation, written through any GCS upstream of this gateway, or None."""
    for upstream in gcs_upstreams(gw):
        item = gw.state.admitted(upstream, object_ref(bucket, name, generation))
        if item is not None and item.purpose == PURPOSE and item.decision in ("allow", "redact"):
            return item
    return None
