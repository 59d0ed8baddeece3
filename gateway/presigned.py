"""Uploads whose bytes leave on a presigned object-store URL: keep them on the gateway, send scanned bytes on.

Several providers answer an upload request with a URL on another host (an object store) that the client
then ``PUT``s the bytes to: Together's 302 ``Location``, Fireworks' signed URLs, the Hugging Face Hub's
LFS actions. The bytes would leave on a host the gateway does not front, so a provider step built on this
module

1. answers the client's upload request itself, with a URL on the gateway (:func:`gateway_url`) that
   carries an unguessable ticket (:func:`new_ticket`; only its digest is stored, :func:`ticket_matches`
   checks it). The client sends no credential there, so the route is marked ``RouteSpec(capability=True)``
   and the step takes the client the ticket was issued to;
2. receives the ``PUT`` there, scans it and refuses a blocked file (nothing left the gateway);
3. for admitted bytes only, checks the provider's real upload URL (:func:`check_upload_url`: its
   origin must be one this gateway sends data to) and sends the scanned (redacted) bytes to it itself
   (:func:`send`: no credential, unless the URL is on the provider's own API origin).

A presigned URL is a bearer capability (its signature is in the query): it is never logged, audited or
echoed; errors name its host at most.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import httpx

from bastion.gateway import minted
from bastion.gateway.errors import Refusal
from bastion.gateway.proxy import read_limited
from bastion.gateway.spec import apply_auth, compiled

if TYPE_CHECKING:
    from starlette.requests import Request

    from bastion.gateway.app import Exchange, Gateway
    from bastion.gateway.proxy import Upstream

#: the shape of a ticket (route pattern): lower-case letters only, as every id the gateway mints
#: (:mod:`bastion.gateway.minted` says why); 40 letters of 26 are 188 bits.
TICKET = r"[a-z]{40}"
_TICKET_LENGTH = 40
#: the upstream's ``hosts`` entry naming the object store it hands out upload URLs for (tests, private stores)
UPLOADS_HOST = "uploads"
#: the most of an object store's (or verify call's) answer that is read; it is not relayed
MAX_ANSWER = 1024 * 1024
_MAX_URL = 8192
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)


# -- 1. the gateway's own upload URL ------------------------------------------------------------------------
def new_ticket() -> tuple[str, str]:
    """(ticket, its sha256): the ticket goes into the URL handed to the client, only the digest is stored."""
    ticket = minted.random_id("", _TICKET_LENGTH)
    return ticket, ticket_digest(ticket)


def ticket_digest(ticket: str) -> str:
    """The sha256 (hex) of a ticket: what the state store keeps, and what an audit entry may name."""
    return hashlib.sha256(ticket.encode("ascii", "replace")).hexdigest()


def ticket_matches(ticket: str, stored_sha256: object) -> bool:
    """Whether ``ticket`` is the one whose digest was stored (constant-time; a missing digest never matches)."""
    if not isinstance(stored_sha256, str) or not stored_sha256:
        return False
    return hmac.compare_digest(ticket_digest(ticket), stored_sha256)


def gateway_url(request: Request, upstream: str, path: str, query: Sequence[tuple[str, str]] = ()) -> str:
    """The absolute URL of ``/<upstream><path>`` (with ``query``) on this gateway, as the client reached it.

    Scheme and host are those of the request the client sent (behind a TLS-terminating proxy, run the
    server with proxy headers so that the scheme is the client's). A Host header that is not a plain
    host[:port] is refused rather than reflected into a URL.
    """
    host = request.headers.get("host", "")
    scheme = request.url.scheme if request.url.scheme in ("http", "https") else "https"
    url = None
    if _HOST.fullmatch(host) is not None:
        try:
            url = httpx.URL(f"{scheme}://{host}")
        except httpx.InvalidURL:  # an IPv6 literal that is not one
            url = None
    if url is None or (url.port is not None and not 0 < url.port <= 65535):
        raise Refusal(
            400,
            "invalid_header",
            "the request's Host header is not a plain host[:port]; the gateway cannot hand out an upload URL",
            param="host",
        )
    root = request.scope.get("root_path", "").rstrip("/")
    return str(url.copy_with(path=f"{root}/{upstream}{path}", params=list(query) or None))


# -- 3. the provider's upload URL -----------------------------------------------------------------------------
def origin(url: httpx.URL) -> tuple[str, str, int]:
    """(scheme, host, port) with the scheme's default port filled in."""
    return (url.scheme, url.host.lower(), url.port or (443 if url.scheme == "https" else 80))


def same_origin(url: httpx.URL, base: str) -> bool:
    """Whether ``url`` is on the origin of ``base`` (the provider's API host: its credential may go there)."""
    try:
        return origin(url) == origin(httpx.URL(base))
    except httpx.InvalidURL:
        return False


def check_upload_url(
    upstream: Upstream,
    raw: object,
    *,
    what: str,
    store_hosts: Sequence[str] | None,
    hosts_key: str | None = UPLOADS_HOST,
    default_origin: str | None = None,
    provider: str = "the upstream",
) -> httpx.URL:
    """The provider-returned upload URL ``raw``, if it points where this gateway sends data; else 502.

    A URL with credentials in it, or not http(s), is refused. Accepted are:

    - ``https`` to a host the provider's object stores are on: ``store_hosts`` (patterns, matched whole;
      ``None``: any https host, for a provider whose stores are not a fixed set);
    - the origin (scheme, host, port) of a configured host, whatever its scheme (a local store in a test,
      an on-premises mirror): ``upstreams.<name>.hosts.<hosts_key>``, or ``default_origin`` when that entry
      is not configured; with ``hosts_key=None``, any origin the upstream's configuration names
      (``base_url`` and every ``hosts`` entry).

    The refusal names the host at most, never the URL (its query is a signature).
    """
    try:
        url = httpx.URL(raw) if isinstance(raw, str) and len(raw) <= _MAX_URL else None
    except (httpx.InvalidURL, ValueError):
        url = None
    if hosts_key is None:
        configured = list(upstream.hosts.values())
    else:
        one = upstream.hosts.get(hosts_key, default_origin)
        configured = [one] if one else []
    origins = set()
    for value in configured:
        try:
            origins.add(origin(httpx.URL(value)))
        except httpx.InvalidURL:
            continue
    well_formed = url is not None and url.scheme in ("http", "https") and bool(url.host) and not url.userinfo
    if url is not None and well_formed:
        store = url.scheme == "https" and (
            store_hosts is None or any(compiled(p).fullmatch(url.host) for p in store_hosts)
        )
        if store or origin(url) in origins:
            return url
    where = f"upstreams.{upstream.name}.hosts.{hosts_key or '<name>'}"
    if default_origin is not None:
        where += f" (default {default_origin})"
    if url is None or not well_formed:
        message = f"{provider} answered {what} with a malformed upload URL; nothing was sent there"
    else:
        host = url.host if url.host.isascii() and len(url.host) <= 253 else "?"
        kind = "a plain-http upload URL" if url.scheme == "http" else "an upload URL"
        message = (
            f"{provider} answered {what} with {kind} on host {host!r}, which is not one this gateway sends "
            "data to; nothing was sent there"
        )
    raise Refusal(
        502,
        "upload_host_not_allowed",
        message,
        hint=f"the gateway operator can name that object store's origin in {where}",
    )


async def send(
    gw: Gateway,
    ex: Exchange,
    method: str,
    url: httpx.URL,
    *,
    content: bytes | AsyncIterator[bytes] | None = None,
    content_length: int | None = None,
    headers: Sequence[tuple[str, str]] = (),
    api_auth: httpx.Auth | None = None,
    what: str = "the upload",
    max_answer: int = MAX_ANSWER,
) -> tuple[httpx.Response, bytes]:
    """Send one request to a URL :func:`check_upload_url` accepted, through the upstream's pool.

    Returns the response and its body (at most ``max_answer`` bytes; the response is closed). Only the
    given ``headers`` and ``Content-Length`` are sent (a presigned URL may sign its headers). No credential
    is sent: ``api_auth`` is applied only when ``url`` is on the provider's own API origin (its
    ``base_url``), never to an object store, whose URL is its own authorisation. Nothing is sent while the
    audit log is unavailable. Redirects are not followed.
    """
    if not ex.forwarded:
        await gw.audit.ensure_available()  # nothing leaves while the audit log is down
    ex.forwarded = True
    hdrs = list(headers)
    if isinstance(content, bytes):
        content_length = len(content)
    if content_length is not None:
        hdrs.append(("content-length", str(content_length)))
    request = httpx.Request(method, url, headers=hdrs, content=content)
    if content is None:
        request.headers.pop("content-length", None)
    if api_auth is not None and same_origin(url, ex.upstream.config.base_url):
        request = apply_auth(api_auth, request)
    request.extensions["timeout"] = ex.upstream.timeout
    try:
        response = await ex.upstream.transport.handle_async_request(request)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise Refusal(
            502,
            "upload_store_unreachable",
            f"{what} failed: its host could not be reached ({type(exc).__name__}); nothing was sent there",
            hint="retry later; the gateway operator can check the network path to the provider's object store",
        ) from None
    except httpx.HTTPError as exc:
        raise Refusal(
            502,
            "upload_store_unreachable",
            f"{what} failed ({type(exc).__name__}); it may be incomplete there",
            hint="send it again",
        ) from None
    response.request = request
    body = await read_limited(response, max_answer, what)
    return response, body


__all__ = [
    "MAX_ANSWER",
    "TICKET",
    "UPLOADS_HOST",
    "check_upload_url",
    "gateway_url",
    "new_ticket",
    "origin",
    "same_origin",
    "send",
    "ticket_digest",
    "ticket_matches",
]
