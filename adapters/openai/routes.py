"""OpenAI API routes the gateway knows, by name.

``training`` routes carry (or reference) training data and are handled by the adapter; every other
known route is pass-through, forwarded only if its name is on the gateway's allow list. A route
that is not in this table is denied.
"""

from __future__ import annotations

from bastion.adapters.base import RouteSpec, RouteTable

ROUTES = RouteTable(
    [
        # training data
        RouteSpec("POST", "/v1/files", "files.create", "training"),
        RouteSpec("POST", "/v1/uploads", "uploads.create", "training"),
        RouteSpec("POST", "/v1/uploads/{upload_id}/parts", "uploads.parts.create", "training"),
        RouteSpec("POST", "/v1/uploads/{upload_id}/complete", "uploads.complete", "training"),
        RouteSpec("POST", "/v1/uploads/{upload_id}/cancel", "uploads.cancel", "training"),
        RouteSpec("POST", "/v1/fine_tuning/jobs", "fine_tuning.jobs.create", "training"),
        # files
        RouteSpec("GET", "/v1/files", "files.list"),
        RouteSpec("GET", "/v1/files/{file_id}", "files.retrieve"),
        RouteSpec("DELETE", "/v1/files/{file_id}", "files.delete"),
        RouteSpec("GET", "/v1/files/{file_id}/content", "files.content"),
        # fine-tuning jobs
        RouteSpec("GET", "/v1/fine_tuning/jobs", "fine_tuning.jobs.list"),
        RouteSpec("GET", "/v1/fine_tuning/jobs/{job_id}", "fine_tuning.jobs.retrieve"),
        RouteSpec("POST", "/v1/fine_tuning/jobs/{job_id}/cancel", "fine_tuning.jobs.cancel"),
        RouteSpec("POST", "/v1/fine_tuning/jobs/{job_id}/pause", "fine_tuning.jobs.pause"),
        RouteSpec("POST", "/v1/fine_tuning/jobs/{job_id}/resume", "fine_tuning.jobs.resume"),
        RouteSpec("GET", "/v1/fine_tuning/jobs/{job_id}/events", "fine_tuning.jobs.list_events"),
        RouteSpec("GET", "/v1/fine_tuning/jobs/{job_id}/checkpoints", "fine_tuning.jobs.checkpoints.list"),
        # models
        RouteSpec("GET", "/v1/models", "models.list"),
        RouteSpec("GET", "/v1/models/{model}", "models.retrieve"),
        RouteSpec("DELETE", "/v1/models/{model}", "models.delete"),
        # inference: data leaves too, so these are off unless the operator lists them
        RouteSpec("POST", "/v1/chat/completions", "chat.completions.create"),
        RouteSpec("POST", "/v1/responses", "responses.create"),
        RouteSpec("POST", "/v1/embeddings", "embeddings.create"),
        RouteSpec("POST", "/v1/moderations", "moderations.create"),
    ]
)

# Read/manage routes needed around a fine-tune; none of them sends training data upstream.
DEFAULT_ALLOWED = frozenset(
    {
        "files.list",
        "files.retrieve",
        "files.delete",
        "files.content",
        "fine_tuning.jobs.list",
        "fine_tuning.jobs.retrieve",
        "fine_tuning.jobs.cancel",
        "fine_tuning.jobs.pause",
        "fine_tuning.jobs.resume",
        "fine_tuning.jobs.list_events",
        "fine_tuning.jobs.checkpoints.list",
        "models.list",
        "models.retrieve",
    }
)
