"""Amazon S3 object writes (where Bedrock training data goes) on the gateway core.

Routes: ``PutObject``, ``CreateMultipartUpload``, ``UploadPart``, ``CompleteMultipartUpload``,
``AbortMultipartUpload``; path-style (``/<upstream>/<bucket>/<key>``) and virtual-hosted
(``Host: <bucket>.<aws.virtual_host>``, path ``/<upstream>/<key>``) addressing. Every other S3
operation (reads, listings, bucket operations) is denied; ``CopyObject`` and ``UploadPartCopy``
(a PUT with ``x-amz-copy-source``) are refused: a server-side copy never passes the scan.

Auth: clients sign with SigV4 as usual (boto3 ``endpoint_url=http(s)://<gateway>/<upstream>``); the
gateway verifies the signature with the client's secret (``aws.clients``) and signs its own requests
with the credentials it holds (``aws.access_key_id_env`` / ``aws.secret_access_key_env``). Residency:
the upstream's region (``region``, or the one in ``s3.<region>.amazonaws.com``) is its jurisdiction.
Errors use S3's XML shape. Steps: :mod:`bastion.adapters.s3.steps`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.adapters.aws.regions import REGIONS, known_hosts, upstream_region
from bastion.adapters.aws.sigv4 import AwsKeys, load_keys
from bastion.adapters.s3.steps import STEPS
from bastion.adapters.s3.xml import s3_error
from bastion.errors import ConfigError
from bastion.gateway.spec import Opaque, ProviderSpec, RouteSpec

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway

# a decoded path: S3's safe characters and the few others boto3 sends percent-encoded
TARGET = r"[A-Za-z0-9!_.*'()/ +=,@:~$&;-]{3,1100}"


def setup(gw: Gateway, upstream: str) -> AwsKeys:
    cfg = gw.config.upstreams[upstream]
    if cfg.aws is None:
        raise ConfigError(
            f"upstream {upstream!r} (S3) needs an 'aws' block: the gateway's own credentials and the client keys",
            hint="aws: {access_key_id_env: ..., secret_access_key_env: ..., clients: {<access key id>: <ENV>}}",
        )
    if cfg.auth.mode != "passthrough":
        raise ConfigError(f"upstream {upstream!r} (S3): auth.mode does not apply; the 'aws' block holds the keys")
    return load_keys(cfg.aws, upstream, upstream_region(cfg, upstream))


_UPLOAD_ID = Opaque("uploadId", r"[A-Za-z0-9._~-]{1,256}", required=True, forward=False)
_PART = Opaque("partNumber", r"[0-9]{1,5}", required=True, forward=False)

SPEC = ProviderSpec(
    name="s3",
    ids={"target": TARGET},
    credentials={},  # SigV4: verified by the steps, never forwarded
    headers=(
        Opaque(
            "content-type", r"[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}(; ?charset=[A-Za-z0-9_-]{1,32})?"
        ),
        Opaque("x-amz-storage-class", r"[A-Z_]{1,32}"),
        Opaque("x-amz-server-side-encryption", r"AES256|aws:kms|aws:kms:dsse"),
        Opaque("x-amz-server-side-encryption-aws-kms-key-id", r"[A-Za-z0-9:/_-]{1,2048}"),
        Opaque("x-amz-expected-bucket-owner", r"[0-9]{12}"),
    ),
    query=(Opaque("x-id", r"[A-Za-z]{1,64}", forward=False),),
    errors=s3_error,
    steps=STEPS,
    regions=REGIONS,
    jurisdictions=known_hosts("s3"),
    setup=setup,
    routes=(
        RouteSpec(
            "PUT",
            "/{target+}",
            "s3.upload_part",
            step="s3.upload_part",
            body="raw",
            default="always",
            match_query=("partNumber", "uploadId"),
            query=(_PART, _UPLOAD_ID),
        ),
        RouteSpec("PUT", "/{target+}", "s3.put_object", step="s3.put_object", body="raw", default="always"),
        RouteSpec(
            "POST",
            "/{target+}",
            "s3.create_multipart_upload",
            step="s3.create_multipart_upload",
            body="raw",
            default="always",
            match_query=("uploads",),
            query=(Opaque("uploads", r"", forward=False),),
        ),
        RouteSpec(
            "POST",
            "/{target+}",
            "s3.complete_multipart_upload",
            step="s3.complete_multipart_upload",
            body="raw",
            default="always",
            match_query=("uploadId",),
            query=(_UPLOAD_ID,),
        ),
        RouteSpec(
            "DELETE",
            "/{target+}",
            "s3.abort_multipart_upload",
            step="s3.abort_multipart_upload",
            default="always",
            match_query=("uploadId",),
            query=(_UPLOAD_ID,),
        ),
    ),
)

__all__ = ["SPEC"]
