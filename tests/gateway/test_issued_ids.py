"""What each adapter reads from an upstream's answer as ids it issued (kept so that a path carrying one back
is not read as personal data): only values of the id's own shape, from the fields that hold them."""

from __future__ import annotations

import json

import pytest

from bastion.adapters.bedrock.spec import issued_arns
from bastion.adapters.hf_hub.spec import issued_commits
from bastion.adapters.openai.spec import issued_object_ids
from bastion.adapters.vertex.jobs import issued_numbers
from bastion.errors import ConfigError
from bastion.gateway.app import _issued_in
from bastion.gateway.config import config_from_mapping
from bastion.gateway.jsonbody import scan_json
from bastion.gateway.spec import RouteSpec, string_paths
from bastion.policies import load_policy
from bastion.policies.engine import PolicyEngine

ARN = "arn:aws:bedrock:us-west-2:390384745178:model-customization-job/amazon.titan-text-lite-v1:0:4k/ab12cd34ef56"


def test_vertex_job_and_project_numbers_from_one_job_or_a_list() -> None:
    one = {"name": "projects/390384745178/locations/europe-west4/tuningJobs/6585669831325548505"}
    assert list(issued_numbers(one)) == ["390384745178", "6585669831325548505"]
    listed = {"tuningJobs": [one, {"name": "projects/my-project/locations/us-central1/tuningJobs/12"}, {"name": 5}]}
    assert list(issued_numbers(listed)) == ["390384745178", "6585669831325548505", "my-project", "12"]
    for junk in (
        {"name": "projects/390384745178/locations/europe-west4/tuningJobs/12/operations/3"},
        {"name": "projects/a b/locations/x/tuningJobs/1"},
        {"tuningJobs": "projects/1/locations/x/tuningJobs/1"},
        [one],
        None,
    ):
        assert list(issued_numbers(junk)) == [], junk


def test_bedrock_job_arns_from_a_job_or_a_list() -> None:
    assert list(issued_arns({"jobArn": ARN, "jobName": "x"})) == [ARN]
    assert list(issued_arns({"modelCustomizationJobSummaries": [{"jobArn": ARN}, {"jobArn": "my-job"}, 3]})) == [ARN]
    assert list(issued_arns({"jobArn": None})) == [] and list(issued_arns({"jobArn": ARN + "\n"})) == []


def test_hub_commit_ids_from_an_info_or_a_commit_answer() -> None:
    sha = "6585669831325548505" + "abcdefabcdefabcdefabc"
    assert list(issued_commits({"id": "acme/set", "sha": sha})) == [sha]
    assert list(issued_commits({"commitOid": sha, "commitUrl": "https://hub/x"})) == [sha]
    assert list(issued_commits({"sha": sha.upper()})) == [] and list(issued_commits({"sha": sha[:-1]})) == []


def test_openai_shaped_ids_from_an_object_or_a_list() -> None:
    job = {"id": "ftjob-6585669831325548505abcdefabcd", "fine_tuned_model": "gpt-4o-mini.ft-0123", "status": "x"}
    assert list(issued_object_ids(job)) == ["ftjob-6585669831325548505abcdefabcd", "gpt-4o-mini.ft-0123"]
    listed = {"object": "list", "data": [{"id": "ftchkpt-1", "fine_tuned_model_checkpoint": "m:ckpt-step-10"}, 7]}
    assert list(issued_object_ids(listed)) == ["ftchkpt-1", "m:ckpt-step-10"]
    assert list(issued_object_ids({"id": 5, "data": "x"})) == [] and list(issued_object_ids([job])) == []
    assert list(issued_object_ids({"id": "x" * 257})) == []


def test_an_answer_that_is_not_json_or_too_deep_names_nothing() -> None:
    route = RouteSpec("GET", "/x", "x.get", issued=issued_commits)
    assert _issued_in(route, b"<html>") == [] and _issued_in(route, b"\xff\xfe") == []
    assert _issued_in(route, b"[" * 100_000 + b"]" * 100_000) == []
    assert _issued_in(route, b'{"sha": "' + b"a" * 40 + b'"}') == ["a" * 40]


@pytest.mark.parametrize("bad", ["", "x" * 257, "tab\there", "line\nbreak"])
def test_own_ids_are_short_printable_values(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"own_ids\[1\] must be 1 to 256 printable characters"):
        config_from_mapping({"upstreams": {"v": {"base_url": "https://x.example", "own_ids": ["123", bad]}}})
    ok = config_from_mapping({"upstreams": {"v": {"base_url": "https://x.example", "own_ids": ["496484883052"]}}})
    assert ok.upstreams["v"].own_ids == ("496484883052",)


def test_inference_answers_are_not_kept_job_answers_are() -> None:
    """A completion's id names nothing a path takes; keeping it would cost a state write per call."""
    from bastion.adapters.openai.spec import SPEC

    by_name = {r.name: r for r in SPEC.routes}
    for name in ("chat.completions.create", "responses.create", "embeddings.create", "files.content"):
        assert by_name[name].issued is None, name
    for name in ("fine_tuning.jobs.create", "fine_tuning.jobs.retrieve", "fine_tuning.jobs.list", "batches.create"):
        assert by_name[name].issued is issued_object_ids, name


def test_string_paths_are_written_as_the_engine_writes_them() -> None:
    doc = {"a": {"b": [{"c": "x"}, "x", 3]}, "x": "x", "k": ["y"]}
    assert sorted(string_paths(doc, ["x"])) == [("a.b[0].c", "x"), ("a.b[1]", "x"), ("x", "x")]
    assert string_paths("x", ["x"]) == [("$", "x")] and string_paths(doc, []) == []


def test_an_own_value_in_a_body_is_left_alone_where_it_stands_only() -> None:
    """An AWS role ARN whose account number reads as a national id (found by drawing accounts)."""
    engine = PolicyEngine(load_policy("pack:eu-gdpr"))
    role = "arn:aws:iam::398604276728:role/bedrock-ft"
    raw = json.dumps({"roleArn": role, "jobName": "j", "tags": [{"v": role}]}).encode()
    plain = scan_json(engine, raw, "job")
    assert plain.changed and role not in plain.body.decode()
    own = frozenset(string_paths(json.loads(raw), [role]))
    kept = scan_json(engine, raw, "job", own)
    assert not kept.changed and kept.body == raw
