"""SigV4 both ways, computed by botocore's signer (never hand-rolled).

- :class:`SigV4Auth` (an ``httpx.Auth``): signs what the gateway sends upstream with credentials the
  gateway holds (service ``s3`` or ``bedrock``, region of the upstream). A streamed body's payload hash
  is given by the caller (``x-amz-content-sha256``), a byte body is hashed here.
- :func:`verify_client`: recomputes a client's ``Authorization: AWS4-HMAC-SHA256`` signature with the
  secret of its access key id from the gateway's config, over exactly the headers the client signed,
  and refuses a request whose signature does not match, whose key is unknown or whose date is stale.
- :meth:`ClientSignature.chunk_signature`: the chained signature of one ``aws-chunked`` chunk
  (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``), with botocore's signing-key derivation.

No secret is ever logged or put in an error; errors name the access key id at most.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from botocore.auth import S3SigV4Auth
from botocore.auth import SigV4Auth as _BotoSigV4
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from bastion.errors import ConfigError
from bastion.gateway.config import AwsConfig
from bastion.gateway.errors import Refusal

ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4_TIMESTAMP = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = timedelta(minutes=15)  # what S3 allows (RequestTimeTooSkewed)
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[A-Z0-9]{16,128})/(?P<date>[0-9]{8})/(?P<region>[a-z0-9-]{1,32})/"
    r"(?P<service>[a-z0-9-]{1,32})/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]{1,2048}), ?"
    r"Signature=(?P<signature>[0-9a-f]{64})"
)


@dataclass(frozen=True)
class AwsKeys:
    """The gateway's own credentials and the secrets of the clients it accepts (read once at start)."""

    credentials: Credentials
    clients: Mapping[str, str] = field(repr=False)
    region: str
    virtual_host: str | None = None


def load_keys(cfg: AwsConfig, upstream: str, region: str) -> AwsKeys:
    """Read every secret ``cfg`` names from the environment now: a missing one fails at start."""

    def env(name: str, what: str) -> str:
        value = os.environ.get(name, "")
        if not value:
            raise ConfigError(
                f"upstream {upstream!r}: {what} is read from ${name}, which is not set",
                hint=f"export {name}=... before starting the gateway",
            )
        return value

    token = env(cfg.session_token_env, "the AWS session token") if cfg.session_token_env else None
    creds = Credentials(
        env(cfg.access_key_id_env, "the gateway's AWS access key id"),
        env(cfg.secret_access_key_env, "the gateway's AWS secret access key"),
        token,
    )
    clients = {key_id: env(name, f"the secret of client key {key_id}") for key_id, name in cfg.clients.items()}
    return AwsKeys(creds, clients, region, cfg.virtual_host)


class _GatewaySigner(S3SigV4Auth):  # type: ignore[misc]  # botocore is untyped
    """botocore's S3 signer; the payload hash is the caller's (the body may be a stream from a spool)."""

    def payload(self, request: AWSRequest) -> str:
        given: str | None = request.context.get("bastion_payload_sha256")
        return given if given is not None else str(super().payload(request))


class _GatewayJsonSigner(_BotoSigV4):  # type: ignore[misc]
    pass


class SigV4Auth(httpx.Auth):
    """Sign an outgoing httpx request with botocore (S3 style for ``s3``, plain SigV4 otherwise)."""

    def __init__(self, credentials: Credentials, service: str, region: str) -> None:
        self._credentials = credentials
        self._service = service
        self._region = region

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        given = request.headers.get("x-amz-content-sha256")
        try:
            body = request.content
        except httpx.RequestNotRead:
            body = None
        if body is None and given is None:
            raise ValueError("a streamed body needs its x-amz-content-sha256 set before signing")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        aws = AWSRequest(method=request.method, url=str(request.url), headers=headers, data=body or b"")
        if self._service == "s3":
            aws.context["bastion_payload_sha256"] = given or hashlib.sha256(body or b"").hexdigest()
            _GatewaySigner(self._credentials, self._service, self._region).add_auth(aws)
        else:
            _GatewayJsonSigner(self._credentials, self._service, self._region).add_auth(aws)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-SHA256"):
            value = aws.headers.get(name)
            if value is not None:
                request.headers[name] = value
        yield request


# -- verifying a client's signature ------------------------------------------------------------------------
class _OnlySigned:
    """A botocore signer's canonical request over exactly the client's signed headers (``_signed``)."""

    _signed: list[str]

    def headers_to_sign(self, request: AWSRequest) -> Any:
        from botocore.compat import HTTPHeaders

        out = HTTPHeaders()
        for name in self._signed:
            out[name] = request.headers.get(name, "")
        return out


class _Verifier(_OnlySigned, S3SigV4Auth):  # type: ignore[misc]
    """botocore's canonical request over exactly the client's signed headers (S3: path not normalised)."""

    def __init__(self, credentials: Credentials, service: str, region: str, signed: list[str]) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed


class _JsonVerifier(_OnlySigned, _BotoSigV4):  # type: ignore[misc]
    def __init__(self, credentials: Credentials, service: str, region: str, signed: list[str]) -> None:
        super().__init__(credentials, service, region)
        self._signed = signed


@dataclass
class ClientSignature:
    """A verified client signature: who signed, for what scope, and the seed of any chunk signatures."""

    access_key_id: str
    region: str
    service: str
    timestamp: str
    signature: str
    _signer: Any = field(repr=False)
    _request: AWSRequest = field(repr=False)

    @property
    def scope(self) -> str:
        return f"{self.timestamp[:8]}/{self.region}/{self.service}/aws4_request"

    def chunk_signature(self, previous: str, chunk_sha256: str) -> str:
        """The signature of one signed ``aws-chunked`` chunk, chained from ``previous``."""
        to_sign = "\n".join(
            ("AWS4-HMAC-SHA256-PAYLOAD", self.timestamp, self.scope, previous, EMPTY_SHA256, chunk_sha256)
        )
        return str(self._signer.signature(to_sign, self._request))


def _denied(code: str, message: str, hint: str | None = None) -> Refusal:
    return Refusal(403, code, message, hint=hint or "sign the request with an access key this gateway knows")


def verify_client(
    keys: AwsKeys,
    *,
    method: str,
    url: str,
    headers: Mapping[str, str],
    service: str,
    body: bytes | None = None,
    now: datetime | None = None,
) -> ClientSignature:
    """Check the request's SigV4 ``Authorization`` header; the verified signature, or a 403 refusal.

    ``url`` is the URL exactly as the client sent it (scheme, Host header, raw path and query).
    ``body``: for services that sign the payload without ``x-amz-content-sha256`` (Bedrock).
    """
    auth = headers.get("authorization", "")
    if not auth:
        raise _denied("AccessDenied", "the request is not signed; this gateway accepts SigV4-signed requests only")
    m = _AUTH.fullmatch(auth.strip())
    if m is None:
        raise _denied(
            "AuthorizationHeaderMalformed",
            "the Authorization header is not a SigV4 (AWS4-HMAC-SHA256) header this gateway can verify",
        )
    key_id = m["key"]
    secret = keys.clients.get(key_id)
    if secret is None:
        raise _denied(
            "InvalidAccessKeyId",
            f"access key {key_id} is not one this gateway accepts",
            hint="ask the gateway operator to add your access key id to aws.clients of this upstream",
        )
    if m["service"] != service:
        raise _denied(
            "AuthorizationHeaderMalformed", f"the request is signed for service {m['service']}, not {service}"
        )
    stamp = headers.get("x-amz-date", "")
    try:
        when = datetime.strptime(stamp, SIGV4_TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        raise _denied("AccessDenied", "the request has no valid X-Amz-Date header") from None
    if stamp[:8] != m["date"]:
        raise _denied("AuthorizationHeaderMalformed", "the credential date does not match X-Amz-Date")
    if abs((now or datetime.now(UTC)) - when) > MAX_SKEW:
        raise _denied(
            "RequestTimeTooSkewed",
            "the difference between the request time and the gateway's time is more than 15 minutes",
            hint="check the client machine's clock",
        )
    signed = m["signed"].split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        raise _denied("AccessDenied", "the signature must cover the host and x-amz-date headers")
    creds = Credentials(key_id, secret)
    signer_cls = _Verifier if service == "s3" else _JsonVerifier
    signer = signer_cls(creds, service, m["region"], signed)
    aws = AWSRequest(method=method, url=url, headers=dict(headers), data=body or b"")
    aws.context["timestamp"] = stamp
    expected = signer.signature(signer.string_to_sign(aws, signer.canonical_request(aws)), aws)
    if not hmac.compare_digest(expected, m["signature"]):
        raise _denied(
            "SignatureDoesNotMatch",
            "the request signature the gateway calculated does not match the signature the client provided",
            hint="check the secret access key and signing method of the client",
        )
    return ClientSignature(key_id, m["region"], service, stamp, m["signature"], signer, aws)


__all__ = ["ALGORITHM", "AwsKeys", "ClientSignature", "SigV4Auth", "load_keys", "verify_client"]
