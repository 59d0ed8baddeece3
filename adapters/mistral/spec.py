"""Mistral AI on the gateway core: ``https://api.mistral.ai`` (the SDK's "EU Production server").

Mistral marks its fine-tuning API as legacy ("no replacement documented"); the ``mistralai`` SDK 2.4.x
still ships these routes (3.x dropped ``fine_tuning.jobs``). What the gateway allows:

- ``POST /v1/files`` (multipart ``file`` + ``purpose`` / ``visibility`` / ``expiry``): only purpose
  ``fine-tune``; every JSONL record is scanned by the policy engine and checked against Mistral's
  formats (chat ``messages`` with roles system/user/assistant/tool, assistant ``tool_calls`` for
  function calling, ``tools``; classifier ``text`` or ``messages`` + ``labels``). The gateway writes a
  new multipart body around the (redacted) file. Files list/retrieve/delete/download/signed URL.
- ``POST /v1/fine_tuning/jobs``: fields allow-listed; ``training_files[].file_id`` and
  ``validation_files[]`` must be files this gateway admitted for this upstream and client. Refused:
  ``repositories`` (Mistral would pull a GitHub repository with a GitHub token: data the gateway never
  sees) and ``integrations`` that carry a credential (W&B ``api_key``); neither value is ever logged,
  recorded or echoed. Jobs list/get/cancel/``start``.

Auth: ``Authorization: Bearer`` (the client's key re-written, or a gateway-held key). Errors use
Mistral's shape ``{"object": "error", "message", "type", "param", "code"}``. Client:
``Mistral(api_key=..., server_url="http://<gateway>/<upstream>")``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.responses import Response

from bastion.adapters import chat_records as chat
from bastion.adapters.openai import steps
from bastion.gateway import jsonbody
from bastion.gateway.errors import Refusal
from bastion.gateway.multipart import FormReader, PartInfo
from bastion.gateway.scan import ScanSink
from bastion.gateway.spec import FileRef, Opaque, ProviderSpec, RouteSpec
from bastion.gateway.spool import Spool

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MAX_RESPONSE = 4 * 1024 * 1024
PURPOSE = "fine-tune"  # batch and ocr files are not training data this gateway scans

# -- record formats (examples/fixtures/*.jsonl of mistralai; classifier factory docs) -----------------
ROLES = chat.ROLES
MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name", "weight", "prefix"})
CHAT = chat.ChatFormat("Mistral's chat format", MESSAGE_KEYS)


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a Mistral fine-tuning record, or None. Never quotes record content."""
    if not isinstance(record, dict):
        return "each line must be a JSON object"
    if "messages" in record:
        if set(record) - {"messages", "tools", "labels"}:
            return "a chat record has only 'messages', 'tools' (function calling) and 'labels' (classifier)"
        messages = record["messages"]
        # a non-empty list first, then 'tools', then each message
        problem = chat.tools_problem(record.get("tools")) if isinstance(messages, list) and messages else None
        problem = problem or chat.messages_problem(messages, "messages", CHAT.message_problem)
        if problem is not None:
            return problem
    elif "text" in record:
        if set(record) - {"text", "labels"} or not isinstance(record["text"], str):
            return "a classifier record is {'text': <string>, 'labels': {<target>: <label(s)>}}"
    else:
        return "not a Mistral fine-tuning record: expected 'messages' (chat, function calling) or 'text' + 'labels'"
    labels = record.get("labels")
    if "labels" in record and not isinstance(labels, dict):
        return "'labels' must be an object {<classifier target>: <label or list of labels>}"
    if "text" in record and labels is None:
        return "a classifier record needs 'labels'"
    return None


# -- POST /v1/files -----------------------------------------------------------------------------------
FORM_FIELDS = frozenset({"purpose", "visibility", "expiry"})
_FORM_VALUES = {"purpose": (PURPOSE,), "visibility": ("workspace", "user")}


def _form_fields(gw: Gateway, reader: FormReader) -> list[tuple[str, str]]:
    if [n for n in reader.field_order if n not in FORM_FIELDS]:
        raise Refusal(
            400,
            "invalid_upload",
            "the form has a field the gateway does not forward; accepted: expiry, purpose, visibility and 'file'",
            hint="the gateway forwards only the fields it knows, so no data can travel unscanned",
        )
    steps.check_only_purpose(gw, reader.fields.get("purpose", PURPOSE), PURPOSE, "Mistral", "batch and ocr")
    fields = [("purpose", PURPOSE)]
    visibility = reader.fields.get("visibility")
    if visibility is not None:
        if visibility not in _FORM_VALUES["visibility"]:
            raise Refusal(400, "invalid_upload", "'visibility' must be 'workspace' or 'user'", param="visibility")
        fields.append(("visibility", visibility))
    expiry = reader.fields.get("expiry")
    if expiry is not None:
        if not (expiry.isascii() and expiry.isdigit() and 0 < int(expiry) <= 100_000):
            raise Refusal(400, "invalid_upload", "'expiry' must be a whole number of hours (1-100000)", param="expiry")
        fields.append(("expiry", str(int(expiry))))
    return fields


async def files_upload(gw: Gateway, ex: Exchange) -> Response:
    settings = gw.settings
    spool = Spool(gw.spool_dir, max_bytes=settings.max_upload_bytes, what="rewritten upload")
    sinks: list[ScanSink] = []

    def open_file(part: PartInfo) -> ScanSink:
        if part.name != "file":
            raise Refusal(400, "invalid_upload", "unexpected file part; only 'file' is accepted", param="file")
        steps._check_part_headers(part)
        sink = steps.records_sink(gw, spool, record_problem)
        sinks.append(sink)
        return sink

    def check_field(part: PartInfo) -> None:
        if part.name in FORM_FIELDS:
            steps._check_part_headers(part)

    try:
        reader = FormReader(ex.request.headers.get("content-type"), open_file, check_field=check_field)
        await gw.feed(ex, settings.max_upload_bytes, reader.write)
        await anyio.to_thread.run_sync(reader.finish)
        fields = _form_fields(gw, reader)
        if not sinks:
            raise Refusal(400, "invalid_upload", "the form has no 'file' part", param="file")
        client_name = reader.files[0].filename or ""
        ex.audit["filename_sha256"] = "sha256:" + hashlib.sha256(client_name.encode()).hexdigest()[:16]
        ex.audit["purpose"] = PURPOSE
        filename = await anyio.to_thread.run_sync(steps.safe_filename, gw, client_name)
        facts = steps.scanned(gw, ex, sinks[0], "upload")
        request_digest = hashlib.sha256(json.dumps([fields, filename, facts["output_sha256"]]).encode()).hexdigest()

        def run() -> Awaitable[Response]:
            return steps.send_file(gw, ex, facts, spool, fields, filename, PURPOSE, "the file upload", steps.json_id)

        return await gw.once(ex, request_digest, run)
    finally:
        spool.discard()


# -- POST /v1/fine_tuning/jobs ------------------------------------------------------------------------
JOB_FIELDS = frozenset(
    {
        "model",
        "hyperparameters",
        "training_files",
        "validation_files",
        "suffix",
        "integrations",
        "auto_start",
        "invalid_sample_skip_percentage",
        "job_type",
        "repositories",
        "classifier_targets",
    }
)
REPOSITORIES_REFUSED = (
    "'repositories' makes Mistral pull training data from a GitHub repository with a GitHub token, data this "
    "gateway never sees or scans; it is refused and nothing was forwarded"
)


def check_job(doc: Any) -> None:
    """Refuse what the job body must not carry, before anything in it is scanned, logged or forwarded."""
    if not isinstance(doc, dict):
        raise Refusal(400, "invalid_request", "the request body must be a JSON object")
    if doc.get("repositories") not in (None, []):
        raise Refusal(
            403,
            "provider_pull_refused",
            REPOSITORIES_REFUSED,
            param="repositories",
            hint="upload the data as a JSONL file through the gateway and name it in training_files",
        )
    integrations = doc.get("integrations")
    if integrations not in (None, []):
        if not isinstance(integrations, list) or not all(isinstance(i, dict) for i in integrations):
            raise Refusal(400, "invalid_request", "'integrations' must be a list of objects", param="integrations")
        for i, item in enumerate(integrations):
            if any(k not in ("type", "project", "name", "run_name") for k in item):
                raise Refusal(
                    403,
                    "credential_in_body",
                    f"'integrations[{i}]' carries a credential (a W&B api_key) or a field the gateway does not know; "
                    "this gateway does not forward credentials inside request bodies, and nothing was forwarded",
                    param="integrations",
                    hint="leave 'integrations' out and follow the job with fine_tuning.jobs.get",
                )
    if set(doc) - JOB_FIELDS:
        raise Refusal(
            400,
            "invalid_request",
            f"fine_tuning.jobs.create accepts the fields {', '.join(sorted(JOB_FIELDS))}; another one was sent",
            hint="the gateway forwards only fields it knows, so no data travels unscanned",
        )
    if not isinstance(doc.get("model"), str):
        raise Refusal(400, "invalid_request", "'model' is required (the base model's name)", param="model")
    files = doc.get("training_files")
    if not isinstance(files, list) or not files:
        raise Refusal(
            400,
            "invalid_request",
            "'training_files' is required: a non-empty list of {file_id, weight} (files uploaded through the gateway)",
            param="training_files",
        )
    for i, item in enumerate(files):
        weight = item.get("weight", 1) if isinstance(item, dict) else None
        bad_weight = isinstance(weight, bool) or not isinstance(weight, (int, float))
        if not isinstance(item, dict) or set(item) - {"file_id", "weight"} or bad_weight:
            raise Refusal(
                400,
                "invalid_request",
                f"'training_files[{i}]' must be {{file_id, weight: <number>}}",
                param="training_files",
            )
    validation = doc.get("validation_files")
    if validation is not None and not isinstance(validation, list):
        raise Refusal(400, "invalid_request", "'validation_files' must be a list of file ids", param="validation_files")
    if doc.get("job_type") not in (None, "completion", "classifier"):
        raise Refusal(400, "invalid_request", "'job_type' must be 'completion' or 'classifier'", param="job_type")


async def jobs_create(gw: Gateway, ex: Exchange) -> Response:
    from bastion.gateway.app import digest

    raw = await gw.read_body(ex)
    if not raw.strip():
        raise Refusal(400, "invalid_json", "fine_tuning.jobs.create needs a JSON body")
    check_job(jsonbody.plain(jsonbody.loads(raw)))
    known = await gw.admitted_ref_ids(ex, raw)
    scan = await gw.scan_json(ex, raw, "fine-tuning job request", known)
    if scan.findings:
        ex.audit["body_findings"] = {"entity_types": scan.entity_types, "rule_ids": scan.rule_ids}
    await gw.check_refs(ex, scan.doc)
    ex.audit["model_sha256"] = digest(str(scan.doc["model"]))
    if scan.classification is not None:
        gw.check_residency(ex, scan.classification)
    decision = "redact" if scan.changed else "allow"

    def run() -> Awaitable[Response]:
        return steps.send_json(gw, ex, scan.body, decision, "the job creation", steps.json_id)

    return await gw.once(ex, hashlib.sha256(b"mistral.jobs|" + scan.body).hexdigest(), run)


# -- the spec -----------------------------------------------------------------------------------------
def mistral_error(refusal: Refusal) -> tuple[str, bytes]:
    """Mistral's error body: ``{"object": "error", "message", "type", "param", "code"}``."""
    body = {
        "object": "error",
        "message": refusal.client_message,
        "type": "internal_error" if refusal.status >= 500 else "invalid_request_error",
        "param": refusal.param,
        "code": refusal.kind,
    }
    return "application/json", json.dumps(body).encode()


NAME = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"
PAGE = (Opaque("page", r"[0-9]{1,6}"), Opaque("page_size", r"[0-9]{1,4}"))
FILE_QUERY = (
    *PAGE,
    Opaque("include_total", r"true|false"),
    Opaque("sample_type", r"pretrain|instruct|batch_request|batch_result|batch_error"),
    Opaque("source", r"upload|repository|mistral"),
    Opaque("search", r"[A-Za-z0-9 ._-]{0,128}"),
    Opaque("purpose", r"fine-tune|batch|ocr"),
    Opaque("mimetypes", r"[a-z]+/[a-z0-9.+-]{1,64}"),
)
STATUSES = (
    "QUEUED|STARTED|VALIDATING|VALIDATED|RUNNING|FAILED_VALIDATION|FAILED|SUCCESS|CANCELLED|CANCELLATION_REQUESTED"
)
JOB_QUERY = (
    *PAGE,
    Opaque("model", NAME),
    Opaque("created_after", r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]{5,15}(Z|[+-][0-9]{2}:?[0-9]{2})?"),
    Opaque("created_before", r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]{5,15}(Z|[+-][0-9]{2}:?[0-9]{2})?"),
    Opaque("created_by_me", r"true|false"),
    Opaque("status", STATUSES),
    Opaque("wandb_project", NAME),
    Opaque("wandb_name", NAME),
    Opaque("suffix", NAME),
)
JOBS = "/v1/fine_tuning/jobs"

SPEC = ProviderSpec(
    name="mistral",
    ids={"file_id": UUID, "job_id": UUID},
    routes=(
        RouteSpec("POST", "/v1/files", "files.upload", step="files.upload", body="multipart", default="always"),
        RouteSpec("GET", "/v1/files", "files.list", query=FILE_QUERY, default="on"),
        RouteSpec("GET", "/v1/files/{file_id}", "files.retrieve", default="on"),
        RouteSpec("DELETE", "/v1/files/{file_id}", "files.delete", default="on"),
        RouteSpec("GET", "/v1/files/{file_id}/content", "files.download", default="on", download=True),
        RouteSpec(
            "GET",
            "/v1/files/{file_id}/url",
            "files.get_signed_url",
            query=(Opaque("expiry", r"[0-9]{1,3}"),),
            default="on",
            download=True,
        ),
        RouteSpec(
            "POST",
            JOBS,
            "fine_tuning.jobs.create",
            step="fine_tuning.jobs.create",
            body="json",
            default="always",
            refs=(
                FileRef("training_files[].file_id", required=True, purposes=(PURPOSE,)),
                FileRef("validation_files[]", purposes=(PURPOSE,)),
            ),
        ),
        RouteSpec("GET", JOBS, "fine_tuning.jobs.list", query=JOB_QUERY, default="on"),
        RouteSpec("GET", f"{JOBS}/{{job_id}}", "fine_tuning.jobs.get", default="on"),
        RouteSpec("POST", f"{JOBS}/{{job_id}}/cancel", "fine_tuning.jobs.cancel", default="on"),
        RouteSpec("POST", f"{JOBS}/{{job_id}}/start", "fine_tuning.jobs.start", default="on"),
    ),
    credentials={"authorization": "bearer"},
    held_key="bearer",
    errors=mistral_error,
    steps={"files.upload": files_upload, "fine_tuning.jobs.create": jobs_create},
    jurisdictions={"api.mistral.ai": "EU"},
    host_patterns=(r"api\.mistral\.ai",),
)
