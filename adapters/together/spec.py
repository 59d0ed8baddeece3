"""Together AI on the gateway core: ``https://api.together.ai`` (US; no regional hosts are documented).

What the gateway allows (``together`` SDK 3.1.x, only ``base_url`` pointed at the gateway):

- files: the SDK's redirect upload (``POST /v1/files`` answering 302 to a presigned object-store URL) is
  rewritten so the bytes come to the gateway, are scanned, and only then go to Together's object store
  (:mod:`bastion.adapters.together.uploads`); the direct form ``POST /v1/files/upload``; only purpose
  ``fine-tune`` and JSONL (CSV and Parquet cannot be scanned record by record); records checked against
  Together's formats (:mod:`bastion.adapters.together.records`). Files list/retrieve/delete/content.
  The multipart flow for files over 5 GB (presigned part URLs) is refused.
- ``POST /v1/fine-tunes`` (SFT and DPO): fields allow-listed; ``training_file`` and ``validation_file`` must
  be files this gateway admitted for this upstream and client. Refused unless the operator lists the option
  in ``gateway.allow_routes``: ``from_hf_model`` (Together pulls a model from the Hugging Face Hub:
  ``fine-tunes.from_hf_model``) and ``hf_output_repo_name`` (Together pushes the trained model there:
  ``fine-tunes.hf_output_repo``). Credentials in the body (``wandb_key``, ``hf_api_token``) are refused, or
  removed before forwarding with ``fine-tunes.strip_credentials``; their values are never logged, recorded,
  echoed or forwarded. Also the calls the SDK makes around a job: ``models/limits`` and ``estimate-price``
  (its file ids checked too), and list/retrieve/cancel/delete/events/checkpoints.

Auth: ``Authorization: Bearer`` (the client's key re-written, or a gateway-held key). Errors use the
OpenAI-compatible shape ``{"error": {"message", "type", "param", "code"}}``. Client:
``Together(api_key=..., base_url="http://<gateway>/<upstream>")``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from bastion.adapters.openai import steps
from bastion.adapters.together import uploads
from bastion.gateway import jsonbody
from bastion.gateway.errors import Refusal
from bastion.gateway.spec import FileRef, Opaque, ProviderSpec, RouteSpec, json_error

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway

MAX_RESPONSE = 4 * 1024 * 1024
PURPOSE = uploads.PURPOSE
FROM_HF_MODEL = "fine_tuning.from_hf_model"
HF_OUTPUT_REPO = "fine_tuning.hf_output_repo"
STRIP_CREDENTIALS = "fine_tuning.strip_credentials"

# -- POST /v1/fine-tunes ------------------------------------------------------------------------------
#: the body fields of together.lib.types.fine_tuning.FinetuneRequest (SDK 3.1.1)
JOB_FIELDS = frozenset(
    {
        "training_file",
        "validation_file",
        "packing",
        "model",
        "n_epochs",
        "learning_rate",
        "lr_scheduler",
        "warmup_ratio",
        "max_grad_norm",
        "weight_decay",
        "n_checkpoints",
        "n_evals",
        "max_seq_length",
        "batch_size",
        "gradient_accumulation_steps",
        "suffix",
        "wandb_key",
        "wandb_base_url",
        "wandb_project_name",
        "wandb_name",
        "wandb_entity",
        "random_seed",
        "early_stopping_enabled",
        "early_stopping_patience",
        "early_stopping_min_delta",
        "early_stopping_warmup_evals",
        "training_type",
        "training_method",
        "train_on_inputs",
        "from_checkpoint",
        "multimodal_params",
        "from_hf_model",
        "hf_model_revision",
        "hf_api_token",
        "hf_output_repo_name",
    }
)
#: fields whose value is a credential for another service: refused (or stripped), never written anywhere
CREDENTIALS = ("wandb_key", "hf_api_token")
METHODS = ("sft", "dpo")


def check_job(gw: Gateway, doc: Any) -> list[str]:
    """Refuse what the job body must not carry, before anything in it is scanned, logged or forwarded.

    Returns the credential fields to strip (only when the operator allows stripping).
    """
    if not isinstance(doc, dict):
        raise Refusal(400, "invalid_request", "the request body must be a JSON object")
    present = [k for k in CREDENTIALS if doc.get(k) not in (None, "")]
    if present and not gw.option_allowed(STRIP_CREDENTIALS):
        raise Refusal(
            403,
            "credential_in_body",
            f"the job carries a credential for another service ({', '.join(present)}); this gateway does not "
            "forward credentials inside request bodies, and nothing was forwarded",
            param=present[0],
            hint="leave it out (follow the job with fine_tuning.retrieve / list_events); the gateway operator can "
            f"list {STRIP_CREDENTIALS} in gateway.allow_routes to have such fields removed instead",
        )
    if doc.get("from_hf_model") not in (None, "") and not gw.option_allowed(FROM_HF_MODEL):
        raise Refusal(
            403,
            "provider_pull_refused",
            "'from_hf_model' makes Together pull a model from the Hugging Face Hub, which this gateway does not "
            "see; it is refused and nothing was forwarded",
            param="from_hf_model",
            hint=f"start from a base model or a Together checkpoint; the gateway operator can list {FROM_HF_MODEL} "
            "in gateway.allow_routes",
        )
    if doc.get("hf_output_repo_name") not in (None, "") and not gw.option_allowed(HF_OUTPUT_REPO):
        raise Refusal(
            403,
            "provider_push_refused",
            "'hf_output_repo_name' makes Together push the trained model to a Hugging Face repository outside "
            "this gateway; it is refused and nothing was forwarded",
            param="hf_output_repo_name",
            hint=f"download the model through the gateway instead; the operator can list {HF_OUTPUT_REPO}",
        )
    if set(doc) - JOB_FIELDS:
        raise Refusal(
            400,
            "invalid_request",
            "fine_tuning.create accepts the fields of the together SDK's FinetuneRequest; another one was sent",
            hint="the gateway forwards only fields it knows, so no data travels unscanned",
        )
    if not isinstance(doc.get("model"), str) and not isinstance(doc.get("from_checkpoint"), str):
        raise Refusal(400, "invalid_request", "'model' (the base model's name) or 'from_checkpoint' is required")
    if not isinstance(doc.get("training_file"), str):
        raise Refusal(
            400,
            "invalid_request",
            "'training_file' is required (the id of a file uploaded through the gateway)",
            param="training_file",
        )
    method = doc.get("training_method")
    if method is not None and (not isinstance(method, dict) or method.get("method") not in METHODS):
        raise Refusal(
            400, "invalid_request", "'training_method.method' must be 'sft' or 'dpo'", param="training_method"
        )
    return [k for k in CREDENTIALS if k in doc] if present else []


ESTIMATE_FIELDS = frozenset(
    {"training_file", "validation_file", "from_checkpoint", "model", "n_epochs", "n_evals", "training_method",
     "training_type"}
)  # fmt: skip
FILE_FIELDS = ("training_file", "validation_file")


async def fine_tunes_create(gw: Gateway, ex: Exchange) -> Response:
    return await _job_request(gw, ex, create=True)


async def fine_tunes_estimate_price(gw: Gateway, ex: Exchange) -> Response:
    return await _job_request(gw, ex, create=False)


async def _job_request(gw: Gateway, ex: Exchange, *, create: bool) -> Response:
    """``fine-tunes`` and ``fine-tunes/estimate-price``: fields checked, file ids admitted, the rest scanned.

    The file-id fields are checked first (pattern, admitted for this upstream and client) and are then not
    scanned: they are ids Together issued and the gateway recorded, and a UUID's digit groups can look like
    a card or phone number to a detector. Every other value is scanned (and redacted) as usual.
    """
    from bastion.gateway.app import digest

    raw = await gw.read_body(ex)
    if not raw.strip():
        raise Refusal(400, "invalid_json", f"{ex.route.name} needs a JSON body")
    loaded = jsonbody.loads(raw)
    doc = jsonbody.plain(loaded)
    strip = check_job(gw, doc) if create else _check_estimate(doc)
    if strip:  # removed before anything scans, records or forwards them
        ex.audit["stripped_fields"] = strip
    ids = {k: doc[k] for k in FILE_FIELDS if k in doc}
    await gw.check_refs(ex, {k: v for k, v in ids.items() if not (k == "validation_file" and v == "")})
    rest = {k: v for k, v in loaded.items() if k not in strip and k not in ids}
    scan = await gw.scan_json(ex, jsonbody.dumps(rest).encode(), f"{ex.route.name} request")
    if scan.findings:
        ex.audit["body_findings"] = {"entity_types": scan.entity_types, "rule_ids": scan.rule_ids}
    scanned = jsonbody.loads(scan.body)
    body = jsonbody.dumps({k: ids[k] if k in ids else scanned[k] for k in loaded if k in ids or k in scanned}).encode()
    if isinstance(doc.get("model"), str):
        ex.audit["model_sha256"] = digest(doc["model"])
    method = doc.get("training_method")
    ex.audit["job_method"] = method.get("method") if isinstance(method, dict) else "sft"
    if scan.classification is not None:
        gw.check_residency(ex, scan.classification)
    decision = "redact" if scan.changed else "allow"

    def created(answer: bytes) -> str | None:
        return uploads._file_id(steps._json_field(answer, "id")) if create else None

    def run() -> Awaitable[Response]:
        return steps.send_json(gw, ex, body, decision, ex.route.name, created)

    return await gw.once(ex, hashlib.sha256(f"together.{ex.route.name}|".encode() + body).hexdigest(), run)


def _check_estimate(doc: Any) -> list[str]:
    if not isinstance(doc, dict):
        raise Refusal(400, "invalid_request", "the request body must be a JSON object")
    if set(doc) - ESTIMATE_FIELDS:
        raise Refusal(
            400,
            "invalid_request",
            f"fine_tuning.estimate_price accepts the fields {', '.join(sorted(ESTIMATE_FIELDS))}; another was sent",
        )
    return []


# -- the spec -----------------------------------------------------------------------------------------
NAME = r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}"
FILE_ID = r"[A-Za-z0-9][A-Za-z0-9._-]{2,127}"  # "file-<uuid>"; the SDK notes the prefix is server-controlled
JOB_ID = r"ft-[A-Za-z0-9][A-Za-z0-9-]{3,63}"
FILES = "/v1/files"
JOBS = "/v1/fine-tunes"
JOB_REFS = (
    FileRef("training_file", required=True, purposes=(PURPOSE,)),
    FileRef("validation_file", purposes=(PURPOSE,)),
)

SPEC = ProviderSpec(
    name="together",
    ids={"file_id": FILE_ID, "job_id": JOB_ID, "upload_id": uploads.HELD_ID.pattern},
    routes=(
        RouteSpec("POST", FILES, "files.upload", step="files.upload", body="multipart", default="always"),
        RouteSpec(
            "PUT",
            "/bastion/uploads/{upload_id}",
            "files.upload.bytes",
            step="files.upload.bytes",
            body="raw",
            default="always",
            query=(Opaque("sig", uploads.SIG, required=True, forward=False),),
            capability=True,
        ),
        RouteSpec(
            "POST", f"{FILES}/upload", "files.upload.form", step="files.upload.form", body="multipart", default="always"
        ),
        RouteSpec(
            "POST", f"{FILES}/{{file_id}}/preprocess", "files.preprocess", step="files.preprocess", default="always"
        ),
        RouteSpec(
            "POST",
            f"{FILES}/multipart/initiate",
            "files.multipart",
            step="files.multipart",
            body="json",
            default="always",
        ),
        RouteSpec("GET", FILES, "files.list", default="on"),
        RouteSpec("GET", f"{FILES}/{{file_id}}", "files.retrieve", default="on"),
        RouteSpec("DELETE", f"{FILES}/{{file_id}}", "files.delete", default="on"),
        RouteSpec("GET", f"{FILES}/{{file_id}}/content", "files.content", default="on", download=True),
        RouteSpec(
            "POST", JOBS, "fine_tuning.create", step="fine_tuning.create", body="json", default="always", refs=JOB_REFS
        ),
        RouteSpec(
            "GET",
            f"{JOBS}/models/limits",
            "fine_tuning.model_limits",
            query=(Opaque("model_name", NAME),),
            default="on",
        ),
        RouteSpec(
            "POST",
            f"{JOBS}/estimate-price",
            "fine_tuning.estimate_price",
            step="fine_tuning.estimate_price",
            body="json",
            default="on",
            refs=JOB_REFS,
        ),
        RouteSpec("GET", JOBS, "fine_tuning.list", default="on"),
        RouteSpec("GET", f"{JOBS}/{{job_id}}", "fine_tuning.retrieve", default="on"),
        RouteSpec("DELETE", f"{JOBS}/{{job_id}}", "fine_tuning.delete", default="on"),
        RouteSpec("POST", f"{JOBS}/{{job_id}}/cancel", "fine_tuning.cancel", default="on"),
        RouteSpec("GET", f"{JOBS}/{{job_id}}/events", "fine_tuning.list_events", default="on"),
        RouteSpec("GET", f"{JOBS}/{{job_id}}/checkpoints", "fine_tuning.list_checkpoints", default="on"),
    ),
    credentials={"authorization": "bearer"},
    held_key="bearer",
    errors=json_error,
    steps={
        "files.upload": uploads.files_create,
        "files.upload.bytes": uploads.upload_put,
        "files.upload.form": uploads.files_upload_form,
        "files.preprocess": uploads.files_preprocess,
        "files.multipart": uploads.multipart_refused,
        "fine_tuning.create": fine_tunes_create,
        "fine_tuning.estimate_price": fine_tunes_estimate_price,
    },
    jurisdictions={"api.together.ai": "US", "api.together.xyz": "US"},
    host_patterns=(r"api\.together\.(ai|xyz)",),
    options={
        FROM_HF_MODEL: "fine-tunes may start from a Hugging Face Hub model (Together pulls it)",
        HF_OUTPUT_REPO: "fine-tunes may push the trained model to a Hugging Face repository",
        STRIP_CREDENTIALS: "credentials in fine-tune bodies (wandb_key, hf_api_token) are removed, not refused",
    },
)
