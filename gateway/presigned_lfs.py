"""Presigned upload URLs: bring the client's bytes to the gateway, and send scanned bytes to the real URL.

Several providers answer an upload request with a URL on another host (an object store) that the
client then ``PUT``s the bytes to: the bytes would leave on a host the gateway does not front. The
gateway instead hands the client a URL of its own (:func:`gateway_url`, authorised by an unguessable
ticket: :func:`new_ticket` / :func:`ticket_matches`), scans what arrives there, and sends the admitted
bytes to the provider's URL itself (:func:`send_presigned`), only to an origin :func:`check_presigned`
accepts.

A presigned URL carries its signature in the query: it is never logged, recorded or echoed; errors
name the host's role ("the provider's object store"), never the URL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

import httpx

from bastion.gateway.errors import Refusal
from bastion.gateway.spec import apply_auth

if TYPE_CHECKING:
    from starlette.requests import Request

    from bastion.gateway.proxy import Upstream

_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9-]{1,63})*|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?"
)


def new_ticket() -> tuple[str, str]:
    """(ticket, its sha256): the ticket goes into the URL handed to the client, only the digest is stored."""
    ticket = secrets.token_urlsafe(32)
    return ticket, hashlib.sha256(ticket.encode()).hexdigest()


def ticket_matches(ticket: str, stored_sha256: object) -> bool:
    """Whether ``ticket`` is the one whose digest was stored (constant-time)."""
    if not isinstance(stored_sha256, str):
        return False
    return hmac.compare_digest(hashlib.sha256(ticket.encode()).hexdigest(), stored_sha256)


def gateway_url(request: Request, upstream: str, path: str) -> str:
    """The absolute URL of ``/<upstream><path>`` on this gateway, as the client reached it.

    Scheme and host are those of the request the client sent (behind a TLS-terminating proxy, run the
    server with proxy headers so that the scheme is the client's). A Host header that is not a plain
    host[:port] is refused rather than reflected into a URL.
    """
    host = request.headers.get("host", "")
    if _HOST.fullmatch(host) is None:
        raise Refusal(
            400,
            "invalid_header",
            "the request's Host header is not a plain host[:port]; the gateway cannot hand out an upload URL",
            param="host",
        )
    scheme = request.url.scheme if request.url.scheme in ("http", "https") else "https"
    root = request.scope.get("root_path", "").rstrip("/")
    return f"{scheme}://{host}{root}/{upstream}{path}"


def check_presigned(upstream: Upstream, url: object, what: str) -> httpx.URL:
    """A provider-returned upload URL the gateway may send data to: https, or an origin configured for the upstream.

    Plain http is accepted only for an origin named in the upstream's configuration (``base_url`` or
    ``hosts``: a local object store in a test or an on-premises mirror).
    """
    try:
        parsed = httpx.URL(url) if isinstance(url, str) and len(url) <= 8192 else None
    except (httpx.InvalidURL, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host or parsed.userinfo:
        raise Refusal(502, "upstream_error", f"the provider answered {what} with a malformed upload URL")
    origins = {_origin(httpx.URL(u)) for u in upstream.hosts.values()}
    if parsed.scheme != "https" and _origin(parsed) not in origins:
        raise Refusal(
            502,
            "upstream_error",
            f"the provider answered {what} with a plain-http upload URL on a host this upstream does not name; "
            "nothing was sent there",
            hint="the operator can name the object store in the upstream's hosts if it is meant to be plain http",
        )
    return parsed


def same_origin(url: httpx.URL, base: str) -> bool:
    """Whether ``url`` is on the origin of ``base`` (the provider's API host: credentials may go there)."""
    return _origin(url) == _origin(httpx.URL(base))


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    port = url.port or (443 if url.scheme == "https" else 80)
    return (url.scheme, url.host.lower(), port)


async def send_presigned(
    upstream: Upstream,
    method: str,
    url: httpx.URL,
    *,
    content: bytes | AsyncIterator[bytes] | None = None,
    content_length: int | None = None,
    headers: Sequence[tuple[str, str]] = (),
    auth: httpx.Auth | None = None,
    what: str = "an upload",
) -> tuple[httpx.Response, bytes]:
    """Send one request to a provider-returned URL with the upstream's transport; (response, body <= 1 MiB).

    No credential is added unless ``auth`` is given (only pass it for the provider's own API origin: a
    presigned URL is authorised by its signature). The answer's body is read and the response closed.
    """
    hdrs = list(headers)
    if isinstance(content, bytes):
        content_length = len(content)
    if content_length is not None:
        hdrs.append(("content-length", str(content_length)))
    request = httpx.Request(method, url, headers=hdrs, content=content)
    if content is None:
        request.headers.pop("content-length", None)
    request = apply_auth(auth, request)
    request.extensions["timeout"] = upstream.timeout
    started = time.perf_counter()
    try:
        response = await upstream.transport.handle_async_request(request)
    except httpx.HTTPError as exc:
        raise _failed(what, exc, started) from None
    response.request = request
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > 1024 * 1024:
                raise Refusal(502, "upstream_error", f"the answer to {what} is larger than 1 MiB")
    except httpx.HTTPError as exc:
        raise _failed(what, exc, started) from None
    finally:
        await response.aclose()
    return response, bytes(body)


def _failed(what: str, exc: Exception, started: float) -> Refusal:
    return Refusal(
        502,
        "upstream_unreachable",
        f"{what} failed ({type(exc).__name__}) after {time.perf_counter() - started:.1f}s",
        hint="retry later; the gateway sends the scanned bytes again",
    )


__all__ = ["check_presigned", "gateway_url", "new_ticket", "same_origin", "send_presigned", "ticket_matches"]
