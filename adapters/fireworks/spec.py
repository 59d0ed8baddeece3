"""Fireworks AI on the gateway core: ``https://api.fireworks.ai`` (US).

Sources: the official ``fireworks-ai`` SDK 1.2.30 (``resources/datasets.py``,
``supervised_fine_tuning_jobs.py``, ``dpo_jobs.py``, ``reinforcement_fine_tuning_jobs.py``,
``lib/dataset_upload.py``) and PROVIDERS.md §6. What the gateway allows:

- ``POST /v1/accounts/{a}/datasets``: the dataset record (``datasetId``, ``dataset{...}``), fields
  allow-listed. ``dataset.externalUrl`` (Fireworks would pull the data from a GCS URI the gateway
  never sees) is refused.
- ``POST …/datasets/{d}:upload`` (multipart ``file``, up to 150 MB at Fireworks): every JSONL record is
  scanned and checked against Fireworks' formats (chat ``messages`` with roles system/user/assistant/tool;
  DPO ``input`` + ``preferred_output`` + ``non_preferred_output``; RFT ``messages`` plus evaluator fields
  such as ``ground_truth``; ``prompt`` + ``completion``). The gateway writes a new multipart body around
  the (redacted) file and, on success, admits the dataset's resource name ``accounts/{a}/datasets/{d}``.
  Admission is bound to that name (jobs name datasets, not uploads), so a second upload to an admitted
  dataset, or creating a dataset of an admitted name again, is refused: use a new dataset id.
- ``…:getUploadEndpoint`` (signed URLs for large files) is held by the gateway (:mod:`.signed_upload`): the
  client gets a gateway URL instead of Fireworks' signed object-store URL, PUTs the file there, and at
  ``:validateUpload`` the gateway scans it, then uploads the rewritten bytes to a signed URL it asks
  Fireworks for (the object store checked against ``upstreams.<name>.hosts.signed_urls``). One file per
  dataset. ``:validateUpload`` with nothing held, get/list/delete and ``:getDownloadEndpoint`` pass through.
- ``supervisedFineTuningJobs``, ``dpoJobs``, ``reinforcementFineTuningJobs``: create (fields allow-listed;
  ``dataset`` and ``evaluationDataset`` must name datasets this gateway admitted for this upstream and
  client), get/list/delete, ``:cancel``, ``:resume``. Refused: ``awsS3Config`` / ``azureBlobStorageConfig``
  (Fireworks reads the data from the customer's bucket), RFT ``mcpServer`` (rollouts call a server the
  gateway never sees) and ``wandbConfig.apiKey`` (a credential in the body, never logged or echoed).

Auth: ``Authorization: Bearer`` (the client's key re-written, or a gateway-held key). Errors use
Fireworks' (grpc-gateway) shape, a ``google.rpc.Status``: ``{"code": <gRPC code>, "message", "details":
[{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason", "domain", "metadata"}]}``. Client:
``Fireworks(api_key=..., account_id=..., base_url="http://<gateway>/<upstream>")``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.responses import Response

from bastion.adapters import chat_records as chat
from bastion.adapters.fireworks import signed_upload
from bastion.adapters.openai import steps
from bastion.gateway import jsonbody
from bastion.gateway.errors import Refusal
from bastion.gateway.multipart import FormReader, PartInfo
from bastion.gateway.scan import ScanSink
from bastion.gateway.spec import FileRef, Opaque, ProviderSpec, RouteSpec, compiled
from bastion.gateway.spool import Spool

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway

ID = r"[a-z0-9][a-z0-9-]{0,62}"  # Fireworks resource ids: lowercase letters, digits, '-'
DATASET_NAME = rf"accounts/{ID}/datasets/{ID}"
EVALUATOR_NAME = rf"accounts/{ID}/evaluators/{ID}"
MAX_RESPONSE = 4 * 1024 * 1024
PURPOSE = "fine-tune"
#: a pre-check of a decoded JSON body (provider pulls, credentials, unknown fields), before it is scanned
Check = Callable[["Gateway", "Exchange", dict[str, Any]], Awaitable[None]]

# -- record formats (docs.fireworks.ai fine-tuning guides; PROVIDERS.md §6) --------------------------
ROLES = chat.ROLES
MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "name", "weight", "reasoning_content"})
CHAT = chat.ChatFormat("Fireworks' chat format", MESSAGE_KEYS)
DPO_KEYS = frozenset({"input", "preferred_output", "non_preferred_output"})


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a Fireworks dataset record, or None. Never quotes record content."""
    if not isinstance(record, dict):
        return "each line must be a JSON object"
    if DPO_KEYS & set(record):
        if set(record) != DPO_KEYS:
            return (
                "a DPO record is exactly {'input': {'messages': [...]}, 'preferred_output': [...], "
                "'non_preferred_output': [...]}"
            )
        prompt = record["input"]
        if not isinstance(prompt, dict) or set(prompt) - {"messages", "tools"}:
            return "a DPO record's 'input' is {'messages': [...], 'tools': [...] (optional)}"
        for problem in (
            chat.messages_problem(prompt.get("messages"), "input.messages", CHAT.message_problem),
            chat.tools_problem(prompt.get("tools")),
            chat.messages_problem(
                record["preferred_output"], "preferred_output", CHAT.message_problem, role="assistant"
            ),
            chat.messages_problem(
                record["non_preferred_output"], "non_preferred_output", CHAT.message_problem, role="assistant"
            ),
        ):
            if problem is not None:
                return problem
        return None
    if "messages" in record:
        # SFT chat; RFT adds evaluator fields (e.g. 'ground_truth') next to 'messages': scanned like the rest
        return chat.messages_problem(record["messages"], "messages", CHAT.message_problem) or chat.tools_problem(
            record.get("tools")
        )
    if "prompt" in record or "completion" in record:
        if set(record) != {"prompt", "completion"} or not all(isinstance(v, str) for v in record.values()):
            return "a completion record is {'prompt': <string>, 'completion': <string>}"
        return None
    return (
        "not a Fireworks dataset record: expected 'messages' (SFT chat, RFT), 'input' + 'preferred_output' + "
        "'non_preferred_output' (DPO) or 'prompt' + 'completion'"
    )


# -- datasets -------------------------------------------------------------------------------------------
def dataset_ref(account: str, dataset: str) -> str:
    """The resource name jobs use for a dataset, and the ref the gateway admits it under."""
    return f"accounts/{account}/datasets/{dataset}"


async def refuse_if_admitted(gw: Gateway, ex: Exchange, ref: str, what: str) -> None:
    if await anyio.to_thread.run_sync(lambda: gw.state.admitted(ex.upstream_name, ref)) is not None:
        raise Refusal(
            409,
            "dataset_already_admitted",
            f"{what}: a dataset of this name was already uploaded through this gateway, and the gateway admits "
            "datasets by name (the name jobs use), so it does not take other data under the same name",
            param="datasetId",
            hint="create a new dataset (a new datasetId) for new data and upload it with datasets.upload",
        )


def new_sink(gw: Gateway, spool: Spool) -> ScanSink:
    """The JSONL scanner (records checked against Fireworks' formats) writing the rewritten file to ``spool``."""
    return steps.records_sink(gw, spool, record_problem)


async def datasets_upload(gw: Gateway, ex: Exchange) -> Response:
    ref = dataset_ref(ex.ids["account_id"], ex.ids["dataset_id"])
    await refuse_if_admitted(gw, ex, ref, "datasets.upload")
    settings = gw.settings
    spool = Spool(gw.spool_dir, max_bytes=settings.max_upload_bytes, what="rewritten upload")
    sinks: list[ScanSink] = []

    def open_file(part: PartInfo) -> ScanSink:
        if part.name != "file" or sinks:
            raise Refusal(400, "invalid_upload", "unexpected file part; only one 'file' is accepted", param="file")
        steps._check_part_headers(part)
        sink = new_sink(gw, spool)
        sinks.append(sink)
        return sink

    try:
        reader = FormReader(ex.request.headers.get("content-type"), open_file)
        await gw.feed(ex, settings.max_upload_bytes, reader.write)
        await anyio.to_thread.run_sync(reader.finish)
        if reader.field_order:
            raise Refusal(
                400,
                "invalid_upload",
                "datasets.upload takes one 'file' part and no other form field",
                hint="the gateway forwards only the parts it knows, so no data can travel unscanned",
            )
        if not sinks:
            raise Refusal(400, "invalid_upload", "the form has no 'file' part", param="file")
        steps.check_purpose(gw, PURPOSE)  # the operator may have taken fine-tune off gateway.scan_purposes
        client_name = reader.files[0].filename or ""
        ex.audit["filename_sha256"] = "sha256:" + hashlib.sha256(client_name.encode()).hexdigest()[:16]
        ex.audit["purpose"] = PURPOSE
        filename = await anyio.to_thread.run_sync(steps.safe_filename, gw, client_name)
        facts = steps.scanned(gw, ex, sinks[0], "upload")
        request_digest = hashlib.sha256(json.dumps([ref, filename, facts["output_sha256"]]).encode()).hexdigest()

        def run() -> Awaitable[Response]:
            # admitted by the dataset's name (what jobs use), whatever the answer's body says
            return steps.send_file(gw, ex, facts, spool, [], filename, PURPOSE, "the dataset upload", lambda _: ref)

        return await gw.once(ex, request_digest, run)
    finally:
        spool.discard()


DATASET_FIELDS = frozenset(
    {"displayName", "evalProtocol", "evaluationResult", "exampleCount", "format", "sourceJobName", "splitted",
     "transformed", "userUploaded", "externalUrl"}
)  # fmt: skip
EXTERNAL_URL_REFUSED = (
    "'dataset.externalUrl' makes Fireworks read the dataset from a storage URI (gs://...), data this gateway "
    "never sees or scans; it is refused and nothing was forwarded"
)


async def check_dataset_create(gw: Gateway, ex: Exchange, doc: dict[str, Any]) -> None:
    """Refuse a provider pull, unknown fields and re-used admitted names before anything is scanned or sent."""
    dataset = doc.get("dataset")
    if not isinstance(dataset, dict):
        raise Refusal(400, "invalid_request", "'dataset' is required: an object (the dataset record)", param="dataset")
    if dataset.get("externalUrl") not in (None, ""):
        raise Refusal(
            403,
            "provider_pull_refused",
            EXTERNAL_URL_REFUSED,
            param="dataset.externalUrl",
            hint="create the dataset without externalUrl and upload the JSONL file with datasets.upload",
        )
    _only(doc, frozenset({"datasetId", "dataset", "sourceDatasetId"}), "datasets.create")
    _only(dataset, DATASET_FIELDS, "datasets.create 'dataset'")
    if dataset.get("format") not in (None, "FORMAT_UNSPECIFIED", "CHAT", "COMPLETION", "RL"):
        raise Refusal(400, "invalid_request", "'dataset.format' must be CHAT, COMPLETION or RL", param="dataset.format")
    for key in ("datasetId", "sourceDatasetId"):
        value = doc.get(key)
        if (key == "datasetId" or value is not None) and not _matches(ID, value):
            raise Refusal(
                400,
                "invalid_request",
                f"'{key}' must be a dataset id (lowercase letters, digits and '-', at most 63)",
                param=key,
            )
    ref = dataset_ref(ex.ids["account_id"], doc["datasetId"])
    await refuse_if_admitted(gw, ex, ref, "datasets.create")


# -- fine-tuning jobs -----------------------------------------------------------------------------------
PULL_FIELDS = {
    "awsS3Config": "makes Fireworks read the training data from an S3 bucket with the customer's AWS credentials",
    "azureBlobStorageConfig": "makes Fireworks read the training data from Azure Blob Storage with the customer's "
    "credentials",
    "mcpServer": "makes Fireworks call an MCP server during rollouts",
}
COMMON_JOB_FIELDS = frozenset(
    {"dataset", "awsS3Config", "azureBlobStorageConfig", "displayName", "reservationTarget", "wandbConfig"}
)
SFT_FIELDS = COMMON_JOB_FIELDS | {
    "baseModel", "batchSize", "batchSizeSamples", "earlyStop", "epochs", "evalAutoCarveout", "evaluationDataset",
    "gradientAccumulationSteps", "isTurbo", "jinjaTemplate", "learningRate", "learningRateWarmupSteps", "loraRank",
    "maxContextLength", "metricsFileSignedUrl", "mtpEnabled", "mtpFreezeBaseModel", "mtpNumDraftTokens", "nodes",
    "optimizerWeightDecay", "outputModel", "region", "rendererHuggingFaceRepoId", "samplerCheckpointSaveIntervalSteps",
    "usePurpose", "useReservation", "warmStartFrom",
}  # fmt: skip
DPO_FIELDS = COMMON_JOB_FIELDS | {"lossConfig", "rendererHuggingFaceRepoId", "trainingConfig", "useReservation"}
RFT_FIELDS = COMMON_JOB_FIELDS | {
    "evaluator", "chunkSize", "evalAutoCarveout", "evaluationDataset", "inferenceParameters", "lossConfig",
    "maxConcurrentEvaluations", "maxConcurrentRollouts", "maxInferenceReplicaCount", "mcpServer", "nodeCount",
    "trainingConfig",
}  # fmt: skip
WANDB_FIELDS = frozenset({"enabled", "entity", "project", "runId"})


def check_job(doc: dict[str, Any], fields: frozenset[str], what: str) -> None:
    """Refuse what a job body must not carry, before anything in it is scanned, logged or forwarded."""
    for key, reason in PULL_FIELDS.items():
        if doc.get(key) not in (None, "", {}):
            raise Refusal(
                403,
                "provider_pull_refused",
                f"'{key}' {reason}, data this gateway never sees or scans; it is refused and nothing was forwarded",
                param=key,
                hint="upload the data with datasets.upload through the gateway and name that dataset in 'dataset'",
            )
    wandb = doc.get("wandbConfig")
    if wandb is not None:
        if not isinstance(wandb, dict):
            raise Refusal(400, "invalid_request", "'wandbConfig' must be an object", param="wandbConfig")
        if set(wandb) - WANDB_FIELDS:
            raise Refusal(
                403,
                "credential_in_body",
                "'wandbConfig' carries a credential (a W&B apiKey) or a field the gateway does not know; this gateway "
                "does not forward credentials inside request bodies, and nothing was forwarded",
                param="wandbConfig",
                hint="leave apiKey out (set the W&B key on the Fireworks account) or leave wandbConfig out",
            )
    _only(doc, fields, what)
    for key in ("dataset", "evaluationDataset"):
        value = doc.get(key)
        if value is None and key == "evaluationDataset":
            continue
        if not _matches(DATASET_NAME, value):
            raise Refusal(
                400,
                "invalid_request",
                f"'{key}' must be a dataset resource name, accounts/<account>/datasets/<dataset id> (a dataset "
                "uploaded through this gateway)",
                param=key,
            )
    if "evaluator" in fields and not _matches(EVALUATOR_NAME, doc.get("evaluator")):
        raise Refusal(
            400,
            "invalid_request",
            "'evaluator' is required: an evaluator resource name, accounts/<account>/evaluators/<evaluator id>",
            param="evaluator",
        )


def _matches(pattern: str, value: Any) -> bool:
    return isinstance(value, str) and compiled(pattern).fullmatch(value) is not None


def _only(doc: dict[str, Any], allowed: frozenset[str], what: str) -> None:
    if set(doc) - allowed:
        raise Refusal(
            400,
            "invalid_request",
            f"{what} accepts the fields {', '.join(sorted(allowed))}; another one was sent",
            hint="the gateway forwards only fields it knows, so no data travels unscanned",
        )


def job_check(fields: frozenset[str], what: str) -> Check:
    async def check(gw: Gateway, ex: Exchange, doc: dict[str, Any]) -> None:
        check_job(doc, fields, what)

    return check


def checked_json_step(check: Check, what: str) -> Callable[[Gateway, Exchange], Awaitable[Response]]:
    """A JSON body: ``check`` on the decoded document first, then scanned, references and residency checked,
    forwarded once (per Idempotency-Key or SDK retry)."""

    async def step(gw: Gateway, ex: Exchange) -> Response:

        raw = await gw.read_body(ex)
        if not raw.strip():
            raise Refusal(400, "invalid_json", f"{ex.route.name} needs a JSON body")
        doc = jsonbody.plain(jsonbody.loads(raw))
        if not isinstance(doc, dict):
            raise Refusal(400, "invalid_request", "the request body must be a JSON object")
        await check(gw, ex, doc)
        scan = await gw.scan_json(ex, raw, what)
        if scan.findings:
            ex.audit["body_findings"] = {"entity_types": scan.entity_types, "rule_ids": scan.rule_ids}
        if ex.route.refs:
            await gw.check_refs(ex, scan.doc)
        if scan.classification is not None:
            gw.check_residency(ex, scan.classification)
        decision = "redact" if scan.changed else "allow"

        def run() -> Awaitable[Response]:
            return steps.send_json(gw, ex, scan.body, decision, ex.route.name, _name)

        key = f"{ex.route.name}|{ex.path}|{ex.query}|".encode() + scan.body
        return await gw.once(ex, hashlib.sha256(key).hexdigest(), run)

    return step


def _name(raw: bytes) -> str | None:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    value = doc.get("name") if isinstance(doc, dict) else None
    return value if isinstance(value, str) and 0 < len(value) <= 256 and value.isprintable() else None


# -- the spec -----------------------------------------------------------------------------------------
_GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 413: 3, 415: 3, 422: 3, 429: 8, 499: 1, 501: 12, 504: 4}


def fireworks_error(refusal: Refusal) -> tuple[str, bytes]:
    """Fireworks' error body, a ``google.rpc.Status`` as grpc-gateway writes it (+ an ``ErrorInfo`` detail)."""
    code = _GRPC_CODES.get(refusal.status, 14 if refusal.status in (502, 503) else 13 if refusal.status >= 500 else 2)
    info = {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": refusal.kind,
        "domain": "bastion.gateway",
        "metadata": {"param": refusal.param} if refusal.param else {},
    }
    body = {"code": code, "message": refusal.client_message, "details": [info]}
    return "application/json", json.dumps(body).encode()


LIST_QUERY = (
    Opaque("pageSize", r"[0-9]{1,4}"),
    Opaque("pageToken", r"[A-Za-z0-9_=.-]{1,512}"),
    Opaque("filter", r"[A-Za-z0-9 _.:=<>!\"()/*-]{1,256}"),
    Opaque("orderBy", r"[A-Za-z0-9 _.,]{1,128}"),
    Opaque("readMask", r"[A-Za-z0-9_.,*]{1,256}"),
)
READ_MASK = (Opaque("readMask", r"[A-Za-z0-9_.,*]{1,256}"),)
ACCOUNT = "/v1/accounts/{account_id}"
DATASETS = f"{ACCOUNT}/datasets"
DATASET = f"{DATASETS}/{{dataset_id}}"
DATASET_REFS = (
    FileRef("dataset", required=True, purposes=(PURPOSE,)),
    FileRef("evaluationDataset", purposes=(PURPOSE,)),
)


def job_routes(collection: str, prefix: str, id_param: str) -> tuple[RouteSpec, ...]:
    """One job kind: create (scanned, datasets checked), list, get, delete, ``:cancel`` and ``:resume``.

    ``{job}:verb`` routes come before ``{job}``: a template id matches any character but '/', so the
    first route that matches wins (a ``:verb`` the spec does not know then fails the id pattern: 400).
    """
    base = f"{ACCOUNT}/{collection}"
    one = f"{base}/{{job_id}}"
    return (
        RouteSpec(
            "POST",
            base,
            f"{prefix}.create",
            step=f"{prefix}.create",
            body="json",
            default="always",
            query=(Opaque(id_param, ID),),
            refs=DATASET_REFS,
        ),
        RouteSpec("GET", base, f"{prefix}.list", query=LIST_QUERY, default="on"),
        RouteSpec("POST", f"{one}:cancel", f"{prefix}.cancel", body="json", default="on"),
        RouteSpec("POST", f"{one}:resume", f"{prefix}.resume", body="json", default="on"),
        RouteSpec("GET", one, f"{prefix}.get", query=READ_MASK, default="on"),
        RouteSpec("DELETE", one, f"{prefix}.delete", default="on"),
    )


SFT = "supervised_fine_tuning_jobs"
DPO = "dpo_jobs"
RFT = "reinforcement_fine_tuning_jobs"

SPEC = ProviderSpec(
    name="fireworks",
    # every {id} in a path; "file_id" is the pattern of a reference to admitted data (a dataset's name)
    ids={
        "account_id": ID,
        "dataset_id": ID,
        "job_id": ID,
        "upload_id": signed_upload.UPLOAD_ID,
        "ticket": signed_upload.TICKET,
        "file_id": DATASET_NAME,
    },
    routes=(
        RouteSpec("POST", DATASETS, "datasets.create", step="datasets.create", body="json", default="always"),
        RouteSpec("GET", DATASETS, "datasets.list", query=LIST_QUERY, default="on"),
        RouteSpec(
            "POST", f"{DATASET}:upload", "datasets.upload", step="datasets.upload", body="multipart", default="always"
        ),
        RouteSpec(
            "POST",
            f"{DATASET}:getUploadEndpoint",
            "datasets.get_upload_endpoint",
            step="datasets.get_upload_endpoint",
            body="json",
            default="always",
        ),
        RouteSpec(
            "POST",
            f"{DATASET}:validateUpload",
            "datasets.validate_upload",
            step="datasets.validate_upload",
            body="json",
            default="always",
        ),
        # the gateway's own upload URL, handed out instead of Fireworks' signed URL (signed_upload.py)
        RouteSpec(
            "PUT",
            f"{DATASET}/bastion-upload/{{upload_id}}/{{ticket}}",
            "datasets.held_upload",
            step="datasets.held_upload",
            body="raw",
            default="always",
            capability=True,  # the ticket in the URL is the credential: the SDK sends no key there
        ),
        RouteSpec(
            "GET",
            f"{DATASET}:getDownloadEndpoint",
            "datasets.get_download_endpoint",
            query=(Opaque("downloadLineage", r"true|false"), *READ_MASK),
            default="on",
            download=True,
        ),
        RouteSpec("GET", DATASET, "datasets.get", query=READ_MASK, default="on"),
        RouteSpec("DELETE", DATASET, "datasets.delete", default="on"),
        *job_routes("supervisedFineTuningJobs", SFT, "supervisedFineTuningJobId"),
        *job_routes("dpoJobs", DPO, "dpoJobId"),
        *job_routes("reinforcementFineTuningJobs", RFT, "reinforcementFineTuningJobId"),
    ),
    credentials={"authorization": "bearer"},
    held_key="bearer",
    errors=fireworks_error,
    steps={
        "datasets.create": checked_json_step(check_dataset_create, "dataset creation request"),
        "datasets.upload": datasets_upload,
        "datasets.get_upload_endpoint": signed_upload.get_upload_endpoint,
        "datasets.held_upload": signed_upload.put_held,
        "datasets.validate_upload": signed_upload.validate_upload,
        f"{SFT}.create": checked_json_step(job_check(SFT_FIELDS, "supervisedFineTuningJobs.create"), "SFT job"),
        f"{DPO}.create": checked_json_step(job_check(DPO_FIELDS, "dpoJobs.create"), "DPO job"),
        f"{RFT}.create": checked_json_step(job_check(RFT_FIELDS, "reinforcementFineTuningJobs.create"), "RFT job"),
    },
    jurisdictions={"api.fireworks.ai": "US"},
    host_patterns=(r"api\.fireworks\.ai",),
)
