"""The OpenAI and Azure OpenAI provider specs: route matching, defaults and the error shape."""

from __future__ import annotations

import json

import pytest

from bastion.adapters import get_provider
from bastion.errors import ConfigError
from bastion.gateway.errors import Refusal
from bastion.gateway.spec import json_error


@pytest.mark.parametrize(
    ("method", "path", "name", "default"),
    [
        ("POST", "/v1/files", "files.create", "always"),
        ("POST", "/v1/uploads", "uploads.create", "always"),
        ("POST", "/v1/uploads/upload_abc/parts", "uploads.parts.create", "always"),
        ("POST", "/v1/uploads/upload_abc/complete", "uploads.complete", "always"),
        ("POST", "/v1/uploads/upload_abc/cancel", "uploads.cancel", "always"),
        ("POST", "/v1/fine_tuning/jobs", "fine_tuning.jobs.create", "always"),
        ("POST", "/v1/batches", "batches.create", "always"),
        ("POST", "/v1/evals/eval_1/runs", "evals.runs.create", "always"),
        ("GET", "/v1/files", "files.list", "on"),
        ("GET", "/v1/files/file-1", "files.retrieve", "on"),
        ("GET", "/v1/files/file-1/content", "files.content", "on"),
        ("GET", "/v1/fine_tuning/jobs/ftjob-1/events", "fine_tuning.jobs.list_events", "on"),
        ("POST", "/v1/chat/completions", "chat.completions.create", "off"),
        ("get", "/v1/models/", "models.list", "on"),
    ],
)
def test_match(method: str, path: str, name: str, default: str) -> None:
    m = get_provider("openai").match(method, path)
    assert m is not None and (m.route.name, m.route.default) == (name, default)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/files"),
        ("POST", "/v1/assistants"),
        ("POST", "/v1/uploads/a/b/parts"),
        ("GET", "/v2/files"),
        ("POST", "/v1/files/file-1/content"),
    ],
)
def test_unknown_routes(method: str, path: str) -> None:
    assert get_provider("openai").match(method, path) is None


def test_inference_routes_not_on_by_default() -> None:
    spec = get_provider("openai")
    assert "chat.completions.create" not in spec.default_on
    assert spec.default_on <= spec.names
    # every route with a body either is scanned JSON or has its own step
    assert all(r.body in ("none", "json") or r.step != "forward" for r in spec.routes)


def test_azure_route_forms() -> None:
    az = get_provider("azure_openai")
    classic = az.match("POST", "/openai/files", frozenset({"api-version"}))
    v1 = az.match("POST", "/openai/v1/files")
    assert classic is not None and v1 is not None
    assert classic.route.name == v1.route.name == "files.create"
    imp = az.match("POST", "/openai/files/import")
    assert imp is not None and imp.route.refused is not None
    assert az.held_key == "api-key" and "api-key" in az.credentials


def test_error_shape() -> None:
    ctype, raw = json_error(
        Refusal(403, "policy_block", "blocked", rule_ids=["r1"], records=[3, 1], entity_types=["IBAN", "EMAIL"])
    )
    body = json.loads(raw)
    assert ctype == "application/json"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["code"] == "policy_block"
    assert "rule(s): r1" in body["error"]["message"] and "EMAIL, IBAN" in body["error"]["message"]
    assert json.loads(json_error(Refusal(500, "internal_error", "x"))[1])["error"]["type"] == "server_error"


def test_unknown_provider() -> None:
    with pytest.raises(ConfigError, match="unknown provider 'nosuch'"):
        get_provider("nosuch")
