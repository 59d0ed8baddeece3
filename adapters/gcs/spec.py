"""Google Cloud Storage on the gateway core: the data plane where Vertex AI tuning data is written.

Vertex AI never receives training bytes through its own API: the JSONL goes to Cloud Storage first
and the tuning job names ``gs://`` URIs. So the gateway fronts the Cloud Storage upload surface
(``storage.googleapis.com``, regional ``storage.{location}.rep.googleapis.com``, locational
``{region}-storage.googleapis.com``; the location of those hosts is the upstream's jurisdiction):

- JSON API uploads ``/upload/storage/v1/b/{bucket}/o`` with ``uploadType=media|multipart|resumable``
  (resumable sessions held by the gateway across requests) and XML API ``PUT /{bucket}/{object}``:
  scanned and written by the gateway (:mod:`bastion.adapters.gcs.uploads`);
- object/bucket metadata reads, object list and delete pass through (allow list ``on``);
- server-side ``copyTo``, ``rewriteTo`` and ``compose`` are refused unless the operator lists them:
  they would put bytes the gateway never scanned under a name (the ledger is per generation, so even
  when allowed, a copied object is not taken for a scanned one by Vertex AI tuning jobs).

Auth: the client's ``Authorization: Bearer`` OAuth token re-written, or tokens the gateway mints from a
service-account key it holds (``auth.scheme: google-service-account``). HMAC/V4-signed XML requests
are not supported. Errors use Cloud Storage's JSON shape ``{"error": {"code", "message", "errors": [...]}}``.
Client: ``storage.Client(client_options={"api_endpoint": "http://<gateway>/<upstream>"})``.
"""

from __future__ import annotations

import json

from bastion.adapters.gcs import uploads
from bastion.adapters.gcs.ledger import BUCKET
from bastion.adapters.gcs.locations import STORAGE_HOSTS
from bastion.gateway import minted
from bastion.gateway.errors import Refusal
from bastion.gateway.spec import Opaque, ProviderSpec, RouteSpec

GENERATION = r"[0-9]{1,20}"
PROJECT = r"[a-z][a-z0-9-]{4,61}[a-z0-9]"
KMS_KEY = (
    r"projects/[a-z0-9-]{1,64}/locations/[a-z0-9-]{1,64}/keyRings/[A-Za-z0-9_-]{1,64}"
    r"/cryptoKeys/[A-Za-z0-9_-]{1,64}(/cryptoKeyVersions/[0-9]{1,10})?"
)
UPLOAD_QUERY = (
    Opaque("uploadType", r"media|multipart|resumable"),
    Opaque("name", uploads.OBJECT_NAME.pattern),
    Opaque("upload_id", minted.shape("bst", 32)),
    Opaque("ifGenerationMatch", GENERATION),
    Opaque("ifGenerationNotMatch", GENERATION),
    Opaque("ifMetagenerationMatch", GENERATION),
    Opaque("ifMetagenerationNotMatch", GENERATION),
    Opaque("predefinedAcl", r"authenticatedRead|bucketOwnerFullControl|bucketOwnerRead|private|projectPrivate"),
    Opaque("kmsKeyName", KMS_KEY),
    Opaque("userProject", PROJECT),
    Opaque("projection", r"full|noAcl"),
)
READ_QUERY = (
    Opaque("generation", GENERATION),
    Opaque("projection", r"full|noAcl"),
    Opaque("userProject", PROJECT),
    Opaque("ifGenerationMatch", GENERATION),
    Opaque("ifMetagenerationMatch", GENERATION),
    Opaque("fields", r"[A-Za-z0-9,()/_-]{1,512}"),
)
LIST_QUERY = (
    *READ_QUERY,
    Opaque("prefix", r"[A-Za-z0-9._/=+-]{0,1024}"),
    Opaque("delimiter", r"/"),
    Opaque("maxResults", r"[0-9]{1,5}"),
    Opaque("pageToken", r"[A-Za-z0-9=_-]{1,1024}"),
    Opaque("versions", r"true|false"),
    Opaque("includeTrailingDelimiter", r"true|false"),
)
HEADERS = (
    Opaque("x-goog-user-project", PROJECT),
    Opaque("x-goog-api-client", r"[A-Za-z0-9 ./_-]{1,256}"),
)
SERVER_SIDE = (
    "server-side copies (copyTo, rewriteTo, compose) write bytes this gateway never scanned under an object "
    "name; they are refused"
)
OBJECTS = "/storage/v1/b/{bucket}/o"
UPLOAD = "/upload/storage/v1/b/{bucket}/o"


def gcs_error(refusal: Refusal) -> tuple[str, bytes]:
    """Cloud Storage's JSON API error: ``{"error": {"code", "message", "errors": [{message, domain, reason}]}}``."""
    message = refusal.client_message
    body = {
        "error": {
            "code": refusal.status,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": refusal.kind}],
        }
    }
    return "application/json; charset=UTF-8", json.dumps(body).encode()


SPEC = ProviderSpec(
    name="gcs",
    ids={
        "bucket": BUCKET,
        "object": uploads.OBJECT_NAME.pattern,
        "dest_bucket": BUCKET,
        "dest_object": uploads.OBJECT_NAME.pattern,
    },
    routes=(
        RouteSpec(
            "PUT",
            UPLOAD,
            "objects.insert.resumable_chunk",
            step="objects.resumable_chunk",
            body="raw",
            query=UPLOAD_QUERY,
            match_query=("upload_id",),
            default="always",
        ),
        RouteSpec(
            "DELETE",
            UPLOAD,
            "objects.insert.resumable_cancel",
            step="objects.resumable_cancel",
            query=UPLOAD_QUERY,
            match_query=("upload_id",),
            default="always",
        ),
        RouteSpec(
            "POST",
            UPLOAD,
            "objects.insert",
            step="objects.insert",
            body="raw",
            query=UPLOAD_QUERY,
            match_query=("uploadType",),
            default="always",
        ),
        RouteSpec("GET", "/storage/v1/b/{bucket}", "buckets.get", query=READ_QUERY, default="on"),
        RouteSpec("GET", OBJECTS, "objects.list", query=LIST_QUERY, default="on"),
        RouteSpec("GET", f"{OBJECTS}/{{object}}", "objects.get", query=READ_QUERY, default="on"),
        RouteSpec("DELETE", f"{OBJECTS}/{{object}}", "objects.delete", query=READ_QUERY, default="on"),
        RouteSpec(
            "POST",
            f"{OBJECTS}/{{object}}/copyTo/b/{{dest_bucket}}/o/{{dest_object}}",
            "objects.copy",
            body="json",
            refused=SERVER_SIDE,
        ),
        RouteSpec(
            "POST",
            f"{OBJECTS}/{{object}}/rewriteTo/b/{{dest_bucket}}/o/{{dest_object}}",
            "objects.rewrite",
            body="json",
            refused=SERVER_SIDE,
        ),
        RouteSpec("POST", f"{OBJECTS}/{{object}}/compose", "objects.compose", body="json", refused=SERVER_SIDE),
        RouteSpec("PUT", "/{bucket}/{object}", "xml.objects.put", step="xml.put", body="raw", default="always"),
    ),
    headers=HEADERS,
    query=(Opaque("prettyPrint", r"true|false"), Opaque("alt", r"json")),
    credentials={"authorization": "bearer"},
    held_key="bearer",
    errors=gcs_error,
    steps={
        "objects.insert": uploads.objects_insert,
        "objects.resumable_chunk": uploads.resumable_chunk,
        "objects.resumable_cancel": uploads.resumable_cancel,
        "xml.put": uploads.xml_put,
    },
    jurisdictions=STORAGE_HOSTS,
    host_patterns=(
        r"storage\.googleapis\.com",
        r"[a-z0-9-]+-storage\.googleapis\.com",
        r"storage\.[a-z0-9-]+\.rep\.googleapis\.com",
    ),
)
