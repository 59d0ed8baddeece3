"""Uploads whose bytes leave on a presigned object-store URL: rewrite the redirect, send the scanned bytes yourself.

Some providers answer an upload request with a URL on an object store that the client then ``PUT``s the
bytes to (Together's 302 ``Location``; Fireworks' signed URLs and Hugging Face LFS actions work the same
way): a host the gateway does not front, so a path-based proxy never sees the bytes. A provider step
built on this module

1. answers the client's upload request itself, with a URL on the gateway (:func:`gateway_url`) that
   carries a gateway-issued capability (:func:`new_capability`; the SDK calls it without its credential,
   so the route is marked ``RouteSpec(capability=True)``);
2. receives the ``PUT`` there, scans it and refuses a blocked file (nothing left the gateway);
3. asks the provider for the real presigned URL only for admitted bytes, checks that URL's host
   (:func:`check_upload_url`) and sends the scanned (redacted) bytes to it (:func:`put_bytes`).

The presigned URL is a bearer capability: it is never logged or audited (only its host), and the
provider's key is never sent with it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import httpx

from bastion.gateway.errors import Refusal
from bastion.gateway.proxy import read_limited
from bastion.gateway.spec import compiled

if TYPE_CHECKING:
    from starlette.requests import Request

    from bastion.gateway.app import Exchange, Gateway

#: the upstream's ``hosts`` entry naming the object store it hands out upload URLs for (tests, private stores)
UPLOADS_HOST = "uploads"
MAX_STORE_ANSWER = 64 * 1024


def gateway_url(request: Request, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
    """An absolute URL on this gateway, as the client reached it (scheme and Host of ``request``)."""
    base = httpx.URL(str(request.base_url))
    return str(base.copy_with(path=path, query=None, params=list(query) or None))


def new_capability() -> tuple[str, str]:
    """(secret for the client's URL, digest to store): the store never holds the secret itself."""
    secret = secrets.token_hex(24)  # no separators: a digit run inside cannot look like a phone number
    return secret, capability_digest(secret)


def capability_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


def capability_ok(secret: str, digest: str) -> bool:
    return hmac.compare_digest(capability_digest(secret), digest)


def check_upload_url(ex: Exchange, raw: str | None, host_patterns: Sequence[str]) -> httpx.URL:
    """The provider's presigned upload URL, if its host is one this gateway sends data to.

    Accepted: ``https`` to a host matching ``host_patterns`` (the provider's object stores), or the origin of
    the upstream's ``hosts.uploads`` (any scheme it is configured with). Anything else is refused with 502
    (the upstream answered something the gateway does not act on); the URL itself is never quoted.
    """
    try:
        url = httpx.URL(raw or "")
    except (httpx.InvalidURL, TypeError):
        url = None
    configured = ex.upstream.hosts.get(UPLOADS_HOST)
    origin = httpx.URL(configured) if configured else None

    def where(u: httpx.URL) -> tuple[str, str, int | None]:
        return (u.scheme, u.host, u.port)

    same_origin = origin is not None and url is not None and where(url) == where(origin)
    provider_store = (
        url is not None and url.scheme == "https" and any(compiled(p).fullmatch(url.host) for p in host_patterns)
    )
    ok = url is not None and bool(url.host) and not url.userinfo and (same_origin or provider_store)
    if url is None or not ok:
        host = url.host if url is not None and url.host and url.host.isascii() and len(url.host) <= 253 else "?"
        raise Refusal(
            502,
            "upload_host_not_allowed",
            f"the upstream handed out an upload URL on host {host!r}, which is not one this gateway sends data to; "
            "the scanned file was not sent",
            hint=f"the gateway operator can name that object store in upstreams.<name>.hosts.{UPLOADS_HOST}",
        )
    return url


async def put_bytes(
    gw: Gateway,
    ex: Exchange,
    url: httpx.URL,
    content: AsyncIterator[bytes],
    length: int,
    *,
    what: str = "the upload",
) -> tuple[int, httpx.Headers]:
    """PUT ``length`` bytes to a presigned URL (no credential: the URL is one), through the upstream's pool.

    Returns the store's status and headers (its body is read and dropped: it may echo the URL).
    Redirects are not followed.
    """
    if not ex.forwarded:
        await gw.audit.ensure_available()  # nothing leaves while the audit log is down
    ex.forwarded = True
    # only Content-Length, as the provider SDKs send it: a presigned URL may sign Content-Type (and would
    # then refuse one it was not signed with), and it needs no credential (it is one)
    request = httpx.Request("PUT", url, headers=[("content-length", str(length))], content=content)
    request.extensions["timeout"] = ex.upstream.timeout
    try:
        response = await ex.upstream.transport.handle_async_request(request)
        response.request = request
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise Refusal(
            502,
            "upload_store_unreachable",
            f"the object store for {what} could not be reached ({type(exc).__name__}); the file was not sent",
            hint="retry later; the gateway operator can check the network path to the provider's object store",
        ) from None
    except httpx.HTTPError as exc:
        raise Refusal(
            502,
            "upload_store_unreachable",
            f"sending {what} to the object store failed ({type(exc).__name__}); it may be incomplete there",
            hint="upload the file again",
        ) from None
    await read_limited(response, MAX_STORE_ANSWER, f"{what} (object store)")
    return response.status_code, response.headers


__all__ = [
    "UPLOADS_HOST",
    "capability_digest",
    "capability_ok",
    "check_upload_url",
    "gateway_url",
    "new_capability",
    "put_bytes",
]
