"""Is an ``s3://`` URI data this gateway scanned? The ledger, checked against what S3 holds now.

The ledger (the state store's admitted objects) names each object version the gateway wrote as
``s3://bucket/key#<ETag>``. A URI passes only if S3's current ETag for it is one the gateway recorded:
an object overwritten or created outside the gateway (a direct PutObject, a server-side copy) has an
ETag the ledger does not know. A prefix (``s3://bucket/folder/``) passes only if it holds at least one
object and every object under it passes. S3 is asked with the gateway's own credentials (HEAD, and
ListObjectsV2 for prefixes) through every upstream that uses the ``s3`` adapter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

import anyio
import anyio.to_thread

from bastion.adapters.aws.sigv4 import AwsKeys, SigV4Auth
from bastion.adapters.bedrock.records import S3_URI
from bastion.adapters.s3 import xml
from bastion.adapters.s3.names import ledger_ref
from bastion.gateway.errors import Refusal
from bastion.gateway.proxy import Upstream, read_limited
from bastion.gateway.state import Admitted

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway

MAX_PREFIX_OBJECTS = 10_000


def _s3_upstreams(gw: Gateway) -> list[tuple[Upstream, AwsKeys]]:
    out = []
    for name, spec in gw.specs.items():
        keys = gw.provider_state.get(name)
        if spec.name == "s3" and isinstance(keys, AwsKeys):
            out.append((gw.upstreams[name], keys))
    return out


async def _call(
    up: Upstream, keys: AwsKeys, method: str, path: str, query: list[tuple[str, str]]
) -> tuple[int, bytes, str | None]:
    auth = SigV4Auth(keys.credentials, "s3", keys.region)
    reply = await up.send(method, path, query=query, headers=[], auth=auth)
    etag = reply.response.headers.get("etag")
    raw = await read_limited(reply.response, 8 * 1024 * 1024, f"S3 {method}")
    return reply.response.status_code, raw, etag


def _scanned(gw: Gateway, upstream: str, uri: str, etag: str) -> Admitted | None:
    item = gw.state.admitted(upstream, ledger_ref(uri, etag))
    return item if item is not None and item.decision in ("allow", "redact") else None


async def _objects(up: Upstream, keys: AwsKeys, bucket: str, key: str) -> list[tuple[str, str]] | None:
    """(key, ETag) of the object ``key``, else of every object under the prefix; None: bucket unknown here."""
    status, _, etag = (
        await _call(up, keys, "HEAD", f"/{bucket}/{quote(key, safe='/~')}", []) if key else (404, b"", None)
    )
    if status == 200 and etag:
        return [(key, etag)]
    if status not in (404, 403):
        raise Refusal(502, "upstream_error", f"S3 answered HTTP {status} when the gateway checked an object")
    prefix = key if not key or key.endswith("/") else key + "/"
    found: list[tuple[str, str]] = []
    token: str | None = None
    while True:
        query = [("list-type", "2"), ("prefix", prefix)] + ([("continuation-token", token)] if token else [])
        status, raw, _ = await _call(up, keys, "GET", f"/{bucket}", query)
        if status in (403, 404):
            return None
        doc = xml.parse(raw) if status == 200 else None
        if doc is None:
            raise Refusal(502, "upstream_error", f"S3 answered HTTP {status} when the gateway listed a prefix")
        for node in doc:
            if xml.local(node.tag) == "Contents":
                k, e = xml.child_text(node, "Key"), xml.child_text(node, "ETag")
                if k is not None and e is not None:
                    found.append((k, e))
        if len(found) > MAX_PREFIX_OBJECTS:
            raise Refusal(
                400,
                "too_many_objects",
                f"an S3 prefix holds more than {MAX_PREFIX_OBJECTS} objects; the gateway checks at most that many",
                hint="name the training file itself, or a smaller prefix",
            )
        token = xml.child_text(doc, "NextContinuationToken")
        if xml.child_text(doc, "IsTruncated") != "true" or not token:
            return found


async def resolve(gw: Gateway, uris: list[str]) -> tuple[list[str], list[Admitted]]:
    """(the URIs that do not name only objects this gateway scanned, the ledger entries of those that do)."""
    bad: list[str] = []
    found: list[Admitted] = []
    ups = _s3_upstreams(gw)
    for uri in uris:
        m = S3_URI.fullmatch(uri)
        if m is None or not ups:
            bad.append(uri)
            continue
        bucket, key = m["bucket"], m["key"] or ""
        items: list[Admitted] = []
        ok = False
        for up, keys in ups:
            objects = await _objects(up, keys, bucket, key)
            if objects is None:
                continue  # the bucket is not one this upstream serves
            ok = bool(objects)
            for k, etag in objects:
                item = await anyio.to_thread.run_sync(_scanned, gw, up.name, f"s3://{bucket}/{k}", etag)
                if item is None:
                    ok = False
                    break
                items.append(item)
            break
        if ok:
            found.extend(items)
        else:
            bad.append(uri)
    return bad, found


async def unscanned(gw: Gateway, uris: list[str]) -> list[str]:
    """The URIs among ``uris`` that do not name (only) objects this gateway scanned, in their order."""
    return (await resolve(gw, uris))[0]


__all__ = ["resolve", "unscanned"]
