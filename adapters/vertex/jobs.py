"""``POST /v1[beta1]/projects/{p}/locations/{l}/tuningJobs``: a tuning job only on data this gateway scanned.

The job body names ``gs://`` URIs; the bytes were written to Cloud Storage earlier (through the GCS
upstream of this gateway, :mod:`bastion.adapters.gcs`). Before the job is forwarded:

- its fields are allow-listed; exactly one tuning spec (supervised, preference, distillation,
  reinforcement) is accepted;
- every dataset URI of the spec (``trainingDatasetUri``, ``validationDatasetUri``, distillation's
  ``promptDatasetUri``) must be a ``gs://bucket/object`` (no wildcard, no prefix). A Vertex dataset
  resource (``vertex_dataset_resource`` in the SDKs, sent in the same field) is data the gateway never
  saw: refused;
- for each URI the gateway asks Cloud Storage (through the GCS upstream's credentials) for the object's
  current generation, which must be one this gateway wrote after scanning it (the ledger). An object
  written, copied, rewritten or composed outside the gateway has another generation: refused;
- residency: the job's location (in the path) is a jurisdiction (``europe-west4`` EU, ``us-central1``
  US, ``eu``/``us`` multi-regions); each object's classification must be allowed there by the policy,
  as well as at the upstream's host; a location with no known jurisdiction is refused;
- the rest of the body (display name, description, labels) is scanned like any JSON body.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import anyio.to_thread
import httpx
from starlette.responses import Response

from bastion.adapters.gcs import ledger
from bastion.adapters.gcs.auth import prime
from bastion.adapters.gcs.locations import jurisdiction_of
from bastion.errors import BastionError
from bastion.gateway import inbound, jsonbody
from bastion.gateway.errors import Refusal
from bastion.gateway.proxy import read_limited
from bastion.gateway.spec import held_key_auth

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway
    from bastion.gateway.state import Admitted

MAX_RESPONSE = 4 * 1024 * 1024
#: the tuning spec fields that name datasets, per spec
DATASET_FIELDS = {
    "supervisedTuningSpec": ("trainingDatasetUri", "validationDatasetUri"),
    "preferenceOptimizationSpec": ("trainingDatasetUri", "validationDatasetUri"),
    "distillationSpec": ("promptDatasetUri", "validationDatasetUri"),
    "reinforcementTuningSpec": ("trainingDatasetUri", "validationDatasetUri"),
}
TRAINING_FIELD = {"distillationSpec": "promptDatasetUri"}
JOB_FIELDS = frozenset(
    {
        "baseModel",
        "preTunedModel",
        "tunedModelDisplayName",
        "description",
        "labels",
        "encryptionSpec",
        "serviceAccount",
        "outputUri",
        *DATASET_FIELDS,
    }
)
DATASET_RESOURCE_REFUSED = (
    "names a Vertex AI dataset resource (vertex_dataset_resource) or another non-gs:// source: data this gateway "
    "never saw or scanned; it is refused and nothing was forwarded"
)


def _bad(message: str, param: str | None = None) -> Refusal:
    return Refusal(400, "invalid_request", message, param=param, hint="see the Vertex AI tuningJobs.create reference")


def check_job(doc: Any) -> list[tuple[str, str]]:
    """The body's shape; returns (field path, gs:// URI) of every dataset it names (training first)."""
    if not isinstance(doc, dict):
        raise _bad("the request body must be a JSON object (a TuningJob)")
    extra = set(doc) - JOB_FIELDS
    if extra:
        raise _bad(
            "tuningJobs.create accepts the fields " + ", ".join(sorted(JOB_FIELDS)) + "; another one was sent",
        )
    specs = [k for k in DATASET_FIELDS if k in doc]
    if len(specs) != 1:
        raise _bad("a tuning job needs exactly one of " + ", ".join(DATASET_FIELDS))
    name = specs[0]
    spec = doc[name]
    if not isinstance(spec, dict):
        raise _bad(f"'{name}' must be an object", param=name)
    if not isinstance(doc.get("baseModel"), str) and not isinstance(doc.get("preTunedModel"), dict):
        raise _bad("'baseModel' (or 'preTunedModel') is required", param="baseModel")
    training = TRAINING_FIELD.get(name, "trainingDatasetUri")
    if training not in spec:
        raise _bad(f"'{name}.{training}' is required: the gs:// URI of a JSONL file written through this gateway")
    uris: list[tuple[str, str]] = []
    for key in DATASET_FIELDS[name]:
        if key not in spec:
            continue
        where = f"{name}.{key}"
        value = spec[key]
        if not isinstance(value, str):
            raise _bad(f"'{where}' must be a string (a gs:// URI)", param=where)
        if not value.startswith("gs://"):
            raise Refusal(
                403,
                "provider_pull_refused",
                f"'{where}' {DATASET_RESOURCE_REFUSED}",
                param=where,
                hint="write the JSONL to Cloud Storage through the gateway and name its gs:// URI",
            )
        if ledger.GS_URI.fullmatch(value) is None:
            raise Refusal(
                403,
                "unscanned_object",
                f"'{where}' must name one object (gs://bucket/object, no wildcard or prefix) this gateway scanned",
                param=where,
            )
        uris.append((where, value))
    return uris


def _gcs_auth(gw: Gateway, ex: Exchange, upstream: str) -> httpx.Auth | None:
    held = gw.held_auth(upstream)
    if held is not None:
        return held
    credential = inbound.client_credential(ex.spec, ex.request.headers)
    return held_key_auth(credential[0], credential[1]) if credential is not None else None


async def current_generation(gw: Gateway, ex: Exchange, upstream: str, bucket: str, name: str) -> str | None:
    """The object's current generation as Cloud Storage reports it (through that GCS upstream), or None."""
    up = gw.upstreams[upstream]
    auth = _gcs_auth(gw, ex, upstream)
    await prime(auth)
    reply = await up.send(
        "GET",
        f"/storage/v1/b/{bucket}/o/{quote(name, safe='')}",
        query=[("fields", "bucket,name,generation")],
        headers=[("accept", "application/json")],
        auth=auth,
    )
    raw = await read_limited(reply.response, MAX_RESPONSE, "the object metadata lookup")
    if reply.response.status_code != 200:
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    gen = doc.get("generation") if isinstance(doc, dict) else None
    ok = isinstance(doc, dict) and doc.get("bucket") == bucket and doc.get("name") == name
    return str(gen) if ok and isinstance(gen, (str, int)) and str(gen).isdigit() else None


async def scanned_object(gw: Gateway, ex: Exchange, where: str, uri: str) -> Admitted:
    m = ledger.GS_URI.fullmatch(uri)
    assert m is not None
    bucket, name = m["bucket"], m["name"]
    upstreams = ledger.gcs_upstreams(gw)
    if not upstreams:
        raise Refusal(
            403,
            "unscanned_object",
            f"'{where}' names a Cloud Storage object, but this gateway has no Cloud Storage upstream, so it "
            "scanned no object",
            param=where,
            hint="configure a gcs upstream and write the training data through it",
        )
    for upstream in upstreams:
        generation = await current_generation(gw, ex, upstream, bucket, name)
        if generation is None:
            continue
        item = await anyio.to_thread.run_sync(ledger.lookup, gw, bucket, name, generation)
        if item is not None:
            return item
    raise Refusal(
        403,
        "unscanned_object",
        f"'{where}' names an object this gateway did not scan: it was not written through the gateway, or it "
        "was overwritten, copied, rewritten or composed since (its current generation is not one the gateway wrote)",
        param=where,
        hint="upload the JSONL through the gateway's Cloud Storage endpoint and use that gs:// URI",
    )


def check_location(gw: Gateway, ex: Exchange, classification: str | None) -> dict[str, Any]:
    location = ex.ids["location"]
    jurisdiction = jurisdiction_of(location)
    if jurisdiction is None:
        raise Refusal(
            403,
            "residency",
            f"the tuning location {location!r} has no jurisdiction this gateway knows, so residency cannot be checked",
            param="location",
            hint="use a regional location such as europe-west4 or us-central1",
        )
    try:
        res = gw.engine.check_residency(f"{ex.upstream_name}@{location}", jurisdiction, classification)
    except BastionError as exc:
        raise Refusal(403, "residency", f"residency check failed: {exc.message}", hint=exc.hint) from None
    if not res.allowed:
        raise Refusal(
            403,
            "residency",
            f"a tuning job in {location} ({jurisdiction}) would store and process data classified "
            f"{res.classification!r} there, which the policy does not allow: {res.reason}",
            rule_ids=[res.rule_id] if res.rule_id else [],
            param="location",
            hint="create the job in a location your policy allows (e.g. europe-west4 for EU-only data)",
        )
    return {"location": location, "jurisdiction": jurisdiction, "rule_id": res.rule_id}


async def tuning_jobs_create(gw: Gateway, ex: Exchange) -> Response:
    from bastion.gateway.app import digest

    raw = await gw.read_body(ex)
    if not raw.strip():
        raise _bad("tuningJobs.create needs a JSON body (a TuningJob)")
    uris = check_job(jsonbody.plain(jsonbody.loads(raw)))
    scan = await gw.scan_json(ex, raw, "tuning job request")
    if scan.findings:
        ex.audit["body_findings"] = {"entity_types": scan.entity_types, "rule_ids": scan.rule_ids}
    datasets: dict[str, Any] = {}
    classes: list[str | None] = [scan.classification]
    for where, uri in uris:
        item = await scanned_object(gw, ex, where, uri)
        datasets[where] = {
            "uri_sha256": digest(uri),
            "ref_sha256": digest(item.ref),
            "decision": item.decision,
            "output_sha256": item.output_sha256,
            "records": item.records,
            "classification": item.classification,
        }
        classes.append(item.classification)
    ex.audit["datasets"] = datasets
    if isinstance(scan.doc, dict) and isinstance(scan.doc.get("baseModel"), str):
        ex.audit["model_sha256"] = digest(scan.doc["baseModel"])
    for cls in classes:
        ex.audit["location"] = check_location(gw, ex, cls)
        gw.check_residency(ex, cls)
    decision = "redact" if scan.changed else "allow"

    async def run() -> Response:
        await gw.record(ex, decision, event="decision")
        await prime(ex.auth)
        reply = await gw.send(ex, content=scan.body, content_type="application/json")
        status = reply.response.status_code
        if 200 <= status < 300:
            answer = await read_limited(reply.response, MAX_RESPONSE, "the tuning job creation")
            name = _json_name(answer)
            await gw.record(ex, decision, event="upstream_response", status=status, object_id=name)
            await gw.note_issued(ex, issued_numbers({"name": name}))  # a later get sends both back
            gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
            return gw.buffered_response(status, answer, reply.response.headers)
        return await gw.relay(ex, reply, decision, event="upstream_response", buffer=True)

    return await gw.once(ex, hashlib.sha256(f"vertex.tuningJobs|{ex.path}|".encode() + scan.body).hexdigest(), run)


#: a tuning job's name as Vertex gives it: project (its number), location, job number
_NAME = re.compile(
    r"projects/([0-9]{1,20}|[a-z][a-z0-9-]{4,61}[a-z0-9])/locations/[a-z0-9-]{1,64}/tuningJobs/([0-9]{1,20})"
)


def issued_numbers(doc: Any) -> Iterator[str]:
    """The project and job numbers of the tuning jobs an answer names (one job, or a list's ``tuningJobs``):
    the SDK sends a job's name back to get or cancel it, and on their own 3 % of job numbers pass a card
    check and 10 % of project numbers a phone check."""
    jobs = doc.get("tuningJobs") if isinstance(doc, dict) and "tuningJobs" in doc else [doc]
    for job in jobs if isinstance(jobs, list) else ():
        name = job.get("name") if isinstance(job, dict) else None
        found = _NAME.fullmatch(name) if isinstance(name, str) else None
        if found is not None:
            yield from found.groups()


def _json_name(raw: bytes) -> str | None:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) and len(name) <= 256 and name.isprintable() else None
