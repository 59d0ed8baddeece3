"""Vertex AI tuning on the gateway core: ``{location}-aiplatform.googleapis.com`` (``tuningJobs``).

Vertex AI never receives training bytes through this API: a tuning job names ``gs://`` objects that
must have been written (and scanned) through this gateway's Cloud Storage upstream
(:mod:`bastion.adapters.vertex.jobs`). Routes, for API versions ``v1`` and ``v1beta1`` (the
``google-genai`` SDK's default):

- ``POST /{v}/projects/{p}/locations/{l}/tuningJobs``: checked (:func:`~bastion.adapters.vertex.jobs.check_job`),
  the dataset URIs against the ledger, the location against residency, the body scanned;
- list, get and ``:cancel`` pass through (allow list ``on``).

Hosts: ``{region}-aiplatform.googleapis.com`` and ``aiplatform.{eu|us}.rep.googleapis.com`` map to a
jurisdiction; ``aiplatform.googleapis.com`` (global) must be given one in the upstream configuration.
Auth: the client's OAuth bearer token re-written, or tokens minted from a held service-account key
(``auth.scheme: google-service-account``). Errors use Google's shape ``{"error": {"code", "message",
"status", "details"}}``. Client: ``genai.Client(vertexai=True, project=..., location=...,
http_options=HttpOptions(base_url="http://<gateway>/<upstream>/"))``.
"""

from __future__ import annotations

import json

from bastion.adapters.gcs.locations import LOCATION, VERTEX_HOSTS
from bastion.adapters.vertex.jobs import issued_numbers, tuning_jobs_create
from bastion.gateway.errors import Refusal
from bastion.gateway.spec import Opaque, ProviderSpec, RouteSpec

STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def google_error(refusal: Refusal) -> tuple[str, bytes]:
    """Google APIs' error: ``{"error": {"code", "message", "status", "details": [ErrorInfo]}}``."""
    body = {
        "error": {
            "code": refusal.status,
            "message": refusal.client_message,
            "status": STATUS.get(refusal.status, "FAILED_PRECONDITION" if refusal.status < 500 else "INTERNAL"),
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": refusal.kind, "domain": "bastion"}
            ],
        }
    }
    return "application/json; charset=UTF-8", json.dumps(body).encode()


JOBS = "/{version}/projects/{project}/locations/{location}/tuningJobs"
LIST_QUERY = (
    Opaque("pageSize", r"[0-9]{1,4}"),
    Opaque("pageToken", r"[A-Za-z0-9=_-]{1,1024}"),
    Opaque("filter", r"[A-Za-z0-9 _.:=<>\"()-]{1,256}"),
)

SPEC = ProviderSpec(
    name="vertex",
    ids={
        "version": r"v1|v1beta1",
        "project": r"[a-z][a-z0-9-]{4,61}[a-z0-9]|[0-9]{1,20}",
        "location": LOCATION,
        "job": r"[0-9]{1,20}",
    },
    routes=(
        RouteSpec("POST", JOBS, "tuningJobs.create", step="tuningJobs.create", body="json", default="always"),
        RouteSpec("GET", JOBS, "tuningJobs.list", query=LIST_QUERY, default="on", issued=issued_numbers),
        RouteSpec("GET", f"{JOBS}/{{job}}", "tuningJobs.get", default="on", issued=issued_numbers),
        RouteSpec("POST", f"{JOBS}/{{job}}:cancel", "tuningJobs.cancel", default="on"),  # the SDK sends no body
    ),
    headers=(Opaque("x-goog-user-project", r"[a-z][a-z0-9-]{4,61}[a-z0-9]"),),
    query=(Opaque("prettyPrint", r"true|false"), Opaque("alt", r"json")),
    credentials={"authorization": "bearer"},
    held_key="bearer",
    errors=google_error,
    steps={"tuningJobs.create": tuning_jobs_create},
    jurisdictions=VERTEX_HOSTS,
    host_patterns=(r"([a-z0-9-]+-)?aiplatform\.googleapis\.com", r"aiplatform\.(eu|us)\.rep\.googleapis\.com"),
)
