"""The OpenAI adapter's route table and error shape."""

from __future__ import annotations

import pytest

from bastion.adapters import get_adapter
from bastion.errors import ConfigError
from bastion.gateway.errors import Refusal


@pytest.mark.parametrize(
    ("method", "path", "name", "kind"),
    [
        ("POST", "/v1/files", "files.create", "training"),
        ("POST", "/v1/uploads", "uploads.create", "training"),
        ("POST", "/v1/uploads/upload_abc/parts", "uploads.parts.create", "training"),
        ("POST", "/v1/uploads/upload_abc/complete", "uploads.complete", "training"),
        ("POST", "/v1/uploads/upload_abc/cancel", "uploads.cancel", "training"),
        ("POST", "/v1/fine_tuning/jobs", "fine_tuning.jobs.create", "training"),
        ("GET", "/v1/files", "files.list", "passthrough"),
        ("GET", "/v1/files/file-1", "files.retrieve", "passthrough"),
        ("GET", "/v1/files/file-1/content", "files.content", "passthrough"),
        ("GET", "/v1/fine_tuning/jobs/ftjob-1/events", "fine_tuning.jobs.list_events", "passthrough"),
        ("POST", "/v1/chat/completions", "chat.completions.create", "passthrough"),
        ("get", "/v1/models/", "models.list", "passthrough"),
    ],
)
def test_classify(method: str, path: str, name: str, kind: str) -> None:
    route = get_adapter("openai").classify(method, path)
    assert route is not None and (route.name, route.kind) == (name, kind)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/files"),
        ("POST", "/v1/assistants"),
        ("POST", "/v1/uploads/../files/parts"),
        ("POST", "/v1/uploads/a/b/parts"),
        ("GET", "/v2/files"),
        ("POST", "/v1/files/file-1/content"),
    ],
)
def test_unknown_routes(method: str, path: str) -> None:
    assert get_adapter("openai").classify(method, path) is None


def test_inference_routes_not_allowed_by_default() -> None:
    adapter = get_adapter("openai")
    assert "chat.completions.create" not in adapter.default_allowed_routes
    assert adapter.default_allowed_routes <= adapter.routes.names
    assert not any(adapter.classify("POST", p).kind == "passthrough" for p in ("/v1/files", "/v1/uploads"))  # type: ignore[union-attr]


def test_error_shape() -> None:
    body = get_adapter("openai").error_body(
        Refusal(403, "policy_block", "blocked", rule_ids=["r1"], records=[3, 1], entity_types=["IBAN", "EMAIL"])
    )
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "policy_block"
    assert "rule(s): r1" in body["error"]["message"] and "EMAIL, IBAN" in body["error"]["message"]
    assert get_adapter("openai").error_body(Refusal(500, "internal_error", "x"))["error"]["type"] == "server_error"


def test_unknown_adapter() -> None:
    with pytest.raises(ConfigError, match="unknown adapter 'acme'"):
        get_adapter("acme")
