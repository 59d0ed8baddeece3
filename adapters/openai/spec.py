"""OpenAI on the gateway core: every route the gateway knows, and what each may carry.

Data routes (``always``): files and uploads (every purpose the gateway scans: fine-tune, batch, evals,
user_data, assistants), fine-tuning jobs, batches, evals and eval runs (only admitted files; inline
data scanned). Read/manage routes are on by default; inference routes only when the operator lists
them (their JSON is scanned like any other body). Residency: ``{us,eu,ae,au,in,jp}.api.openai.com``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from bastion.adapters.openai import steps
from bastion.gateway.spec import FileRef, Opaque, ProviderSpec, RouteSpec, json_error

ID = r"[A-Za-z0-9_-]{1,96}"
IDS = {
    "file_id": r"file-[A-Za-z0-9_-]{1,96}",
    "upload_id": r"upload_[A-Za-z0-9]{1,96}",
    "job_id": r"ftjob-[A-Za-z0-9]{1,96}",
    "checkpoint_id": r"ftckpt_[A-Za-z0-9]{1,96}",
    "permission_id": r"cp_[A-Za-z0-9]{1,96}",
    "batch_id": r"batch_[A-Za-z0-9]{1,96}",
    "eval_id": r"eval_[A-Za-z0-9]{1,96}",
    "run_id": r"evalrun_[A-Za-z0-9]{1,96}",
    "output_item_id": r"outputitem_[A-Za-z0-9]{1,96}",
    "model": r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}",
}
PURPOSES = r"fine-tune|batch|evals|user_data|assistants|vision"
HEADERS = (
    Opaque("openai-organization", r"org-[A-Za-z0-9]{1,64}"),
    Opaque("openai-project", r"proj_[A-Za-z0-9]{1,64}"),
    Opaque("openai-beta", r"[a-z0-9_.=-]{1,64}(,[a-z0-9_.=-]{1,64}){0,4}"),
    Opaque("idempotency-key", r"[A-Za-z0-9_.:-]{1,255}", forward=False),
)
PAGE = (Opaque("limit", r"[0-9]{1,5}"), Opaque("after", ID), Opaque("order", r"asc|desc"))


#: the fields of an answer that hold ids the client may send back in a path
_ISSUED_FIELDS = ("id", "fine_tuned_model", "fine_tuned_model_checkpoint")


def issued_object_ids(doc: Any) -> Iterator[str]:
    """The ids an answer names (an object, or a list's ``data``): Azure OpenAI's job, checkpoint and model ids
    hold 32 hex digits, and a run of them passes a card or id number check about 1 % of the time."""
    data = doc.get("data") if isinstance(doc, dict) else None
    items: list[Any] = data if isinstance(data, list) else [doc]
    for item in items:
        if isinstance(item, dict):
            for key in _ISSUED_FIELDS:
                value = item.get(key)
                if isinstance(value, str) and len(value) <= 256:
                    yield value


def _list(path: str, name: str, *extra: Opaque) -> RouteSpec:
    return RouteSpec("GET", path, name, query=(*PAGE, *extra), default="on", issued=issued_object_ids)


def _get(path: str, name: str, *, download: bool = False) -> RouteSpec:
    issued = None if download else issued_object_ids
    return RouteSpec("GET", path, name, default="on", download=download, issued=issued)


def _post(path: str, name: str, default: str = "on") -> RouteSpec:
    return RouteSpec("POST", path, name, default=default, issued=issued_object_ids)  # type: ignore[arg-type]


def _json(
    path: str, name: str, default: str = "always", *refs: FileRef, method: str = "POST", names_ids: bool = True
) -> RouteSpec:
    """A JSON route; ``names_ids=False`` for answers that name nothing a path takes (inference: a completion's
    id would cost a state write per call)."""
    return RouteSpec(
        method,
        path,
        name,
        body="json",
        default=default,  # type: ignore[arg-type]
        refs=refs,
        issued=issued_object_ids if names_ids else None,
    )


def routes(prefix: str = "/v1", *, query: tuple[Opaque, ...] = ()) -> tuple[RouteSpec, ...]:
    """The OpenAI route table under ``prefix`` (Azure OpenAI serves the same API under /openai/v1)."""
    p = prefix
    table = (
        # training and evaluation data: scanned, always on
        RouteSpec("POST", f"{p}/files", "files.create", step="files.create", body="multipart", default="always"),
        RouteSpec("POST", f"{p}/uploads", "uploads.create", step="uploads.create", body="json", default="always"),
        RouteSpec(
            "POST",
            f"{p}/uploads/{{upload_id}}/parts",
            "uploads.parts.create",
            step="uploads.parts",
            body="multipart",
            default="always",
        ),
        RouteSpec(
            "POST",
            f"{p}/uploads/{{upload_id}}/complete",
            "uploads.complete",
            step="uploads.complete",
            body="json",
            default="always",
        ),
        RouteSpec(
            "POST", f"{p}/uploads/{{upload_id}}/cancel", "uploads.cancel", step="uploads.cancel", default="always"
        ),
        _json(
            f"{p}/fine_tuning/jobs",
            "fine_tuning.jobs.create",
            "always",
            FileRef("training_file", required=True, purposes=("fine-tune",)),
            FileRef("validation_file", purposes=("fine-tune",)),
        ),
        _json(f"{p}/batches", "batches.create", "always", FileRef("input_file_id", required=True, purposes=("batch",))),
        _json(f"{p}/evals", "evals.create"),
        _json(
            f"{p}/evals/{{eval_id}}/runs",
            "evals.runs.create",
            "always",
            FileRef("data_source.source.id", when=("data_source.source.type", "file_id"), required=True),
        ),
        _json(f"{p}/fine_tuning/alpha/graders/run", "fine_tuning.alpha.graders.run", "on", names_ids=False),
        _json(f"{p}/fine_tuning/alpha/graders/validate", "fine_tuning.alpha.graders.validate", "on", names_ids=False),
        # files
        _list(f"{p}/files", "files.list", Opaque("purpose", PURPOSES)),
        _get(f"{p}/files/{{file_id}}", "files.retrieve"),
        RouteSpec("DELETE", f"{p}/files/{{file_id}}", "files.delete", default="on"),
        _get(f"{p}/files/{{file_id}}/content", "files.content", download=True),
        # fine-tuning jobs
        _list(f"{p}/fine_tuning/jobs", "fine_tuning.jobs.list"),
        _get(f"{p}/fine_tuning/jobs/{{job_id}}", "fine_tuning.jobs.retrieve"),
        _post(f"{p}/fine_tuning/jobs/{{job_id}}/cancel", "fine_tuning.jobs.cancel"),
        _post(f"{p}/fine_tuning/jobs/{{job_id}}/pause", "fine_tuning.jobs.pause"),
        _post(f"{p}/fine_tuning/jobs/{{job_id}}/resume", "fine_tuning.jobs.resume"),
        _list(f"{p}/fine_tuning/jobs/{{job_id}}/events", "fine_tuning.jobs.list_events"),
        _list(f"{p}/fine_tuning/jobs/{{job_id}}/checkpoints", "fine_tuning.jobs.checkpoints.list"),
        # sharing a trained model with other projects: off unless listed
        _json(
            f"{p}/fine_tuning/checkpoints/{{model}}/permissions", "fine_tuning.checkpoints.permissions.create", "off"
        ),
        _list(
            f"{p}/fine_tuning/checkpoints/{{model}}/permissions",
            "fine_tuning.checkpoints.permissions.retrieve",
            Opaque("project_id", r"proj_[A-Za-z0-9]{1,64}"),
        ),
        # batches
        _list(f"{p}/batches", "batches.list"),
        _get(f"{p}/batches/{{batch_id}}", "batches.retrieve"),
        _post(f"{p}/batches/{{batch_id}}/cancel", "batches.cancel"),
        # evals
        _list(f"{p}/evals", "evals.list", Opaque("order_by", r"created_at|updated_at")),
        _get(f"{p}/evals/{{eval_id}}", "evals.retrieve"),
        _json(f"{p}/evals/{{eval_id}}", "evals.update", "on"),
        RouteSpec("DELETE", f"{p}/evals/{{eval_id}}", "evals.delete", default="on"),
        _list(f"{p}/evals/{{eval_id}}/runs", "evals.runs.list", Opaque("status", r"[a-z_]{1,32}")),
        _get(f"{p}/evals/{{eval_id}}/runs/{{run_id}}", "evals.runs.retrieve"),
        _post(f"{p}/evals/{{eval_id}}/runs/{{run_id}}", "evals.runs.cancel"),
        RouteSpec("DELETE", f"{p}/evals/{{eval_id}}/runs/{{run_id}}", "evals.runs.delete", default="on"),
        _list(
            f"{p}/evals/{{eval_id}}/runs/{{run_id}}/output_items",
            "evals.runs.output_items.list",
            Opaque("status", r"fail|pass"),
        ),
        _get(
            f"{p}/evals/{{eval_id}}/runs/{{run_id}}/output_items/{{output_item_id}}", "evals.runs.output_items.retrieve"
        ),
        # models
        _get(f"{p}/models", "models.list"),
        _get(f"{p}/models/{{model}}", "models.retrieve"),
        RouteSpec("DELETE", f"{p}/models/{{model}}", "models.delete"),
        # inference: data leaves too, so these are off unless the operator lists them (bodies scanned)
        _json(f"{p}/chat/completions", "chat.completions.create", "off", names_ids=False),
        _json(f"{p}/responses", "responses.create", "off", names_ids=False),
        _json(f"{p}/embeddings", "embeddings.create", "off", names_ids=False),
        _json(f"{p}/moderations", "moderations.create", "off", names_ids=False),
    )
    if not query:
        return table
    return tuple(dataclasses.replace(r, query=(*query, *r.query)) for r in table)


SPEC = ProviderSpec(
    name="openai",
    routes=routes(),
    ids=IDS,
    headers=HEADERS,
    credentials={"authorization": "bearer"},
    held_key="bearer",
    errors=json_error,
    steps=steps.STEPS,
    jurisdictions={
        "api.openai.com": "US",
        "us.api.openai.com": "US",
        "eu.api.openai.com": "EU",
        "ae.api.openai.com": "AE",
        "au.api.openai.com": "AU",
        "in.api.openai.com": "IN",
        "jp.api.openai.com": "JP",
    },
)
