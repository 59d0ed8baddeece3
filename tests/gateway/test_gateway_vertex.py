"""Vertex AI tuning through the gateway with the official ``google-genai`` SDK (``client.tunings.tune``,
Vertex mode, only ``http_options.base_url`` pointed at the gateway), the training data written with
``google-cloud-storage`` through the same gateway; one 127.0.0.1 stand-in speaks Cloud Storage's JSON
API and Vertex AI's ``tuningJobs`` (``gw_google.FakeGoogle``). The policy here is EU-only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google import genai
from google.cloud import storage
from google.genai import errors as genai_errors
from google.genai import types
from google.oauth2.credentials import Credentials
from gw_google import (
    CARD_LIKE_JOB_NUMBER_MADE_ELSEWHERE,
    JOB_NUMBERS_THAT_READ_AS_CARDS,
    PROJECT_NUMBER_THAT_READS_AS_A_PHONE,
    UNISSUED_CARD_LIKE_JOB_NUMBER,
    FakeGoogle,
)
from gw_support import EMAIL, jsonl

from bastion.adapters import get_provider
from bastion.gateway.app import Gateway, create_gateway
from bastion.gateway.config import config_from_mapping
from bastion.gateway.errors import Refusal
from bastion.gateway.inbound import check_opaque
from bastion.gateway.serve import ServerThread
from bastion.gateway.state import StateError
from bastion.policies import load_policy_text

pytestmark = pytest.mark.filterwarnings("ignore:The SDK's tuning implementation is experimental")
TOKEN = "ya29.client-oauth-token-do-not-log-vertex-0123"
BUCKET = "bastion-tuning-eu"
EU_ONLY = """
version: 1
name: eu-only
classifications: [public, internal, personal, special]
default_classification: internal
detectors:
  - {id: pii.email, type: email, action: redact, classification: personal}
  - {id: fin.iban, type: iban, action: block, classification: special}
  - {id: fin.card, type: payment_card, action: block, classification: special}
  - {id: pii.phone, type: phone, action: redact, classification: personal, regions: [DE, FR, IT, ES, NL, GB]}
residency:
  - {id: res.eu-only, classifications: [public, internal, personal], jurisdictions: [EU]}
"""


#: a project number the operator listed in upstreams.vertex.own_ids (it reads as a phone number alone)
OWN_PROJECT_NUMBER = "496484883052"
#: a job number that reads as a card, created while the state store could not keep it
UNKEPT_CARD_LIKE_JOB_NUMBER = "5928673886573712101"
#: a service account the operator listed there too (an e-mail address to the policy)
OWN_SERVICE_ACCOUNT = "tuning@bastion-test.iam.gserviceaccount.com"


def gemini(user: str, model: str = "ok") -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": user}]}, {"role": "model", "parts": [{"text": model}]}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeGoogle, Gateway, str, Path]]:
    fake = FakeGoogle()
    tmp = tmp_path_factory.mktemp("vertex")
    policy = load_policy_text(EU_ONLY, source="eu-only.yaml")
    with ServerThread(fake.app()) as up:
        cfg = config_from_mapping(
            {
                "upstreams": {
                    "gcs": {"base_url": up.url, "jurisdiction": "EU"},
                    "vertex": {
                        "base_url": up.url,
                        "jurisdiction": "EU",
                        "own_ids": [OWN_PROJECT_NUMBER, OWN_SERVICE_ACCOUNT],
                    },
                },
                "gateway": {"state_dir": str(tmp), "spool_dir": str(tmp / "spool")},
            }
        )
        gw = create_gateway(cfg, policy, policy_name="eu-only.yaml")
        srv = ServerThread(gw.app).start()
        try:
            yield fake, gw, srv.url, tmp
        finally:
            srv.stop()


def upload(url: str, tmp: Path, name: str, data: bytes) -> str:
    cl = storage.Client(project="bastion-test", credentials=Credentials(token=TOKEN),
                        client_options={"api_endpoint": f"{url}/gcs"})  # fmt: skip
    path = tmp / name
    path.write_bytes(data)
    cl.bucket(BUCKET).blob(name).upload_from_filename(str(path))
    return f"gs://{BUCKET}/{name}"


_CLIENTS: list[genai.Client] = []  # a genai.Client closes its HTTP client when it is garbage-collected


def vertex(url: str, location: str = "europe-west4") -> genai.Client:
    _CLIENTS.append(
        genai.Client(
            vertexai=True,
            project="bastion-test",
            location=location,
            credentials=Credentials(token=TOKEN),
            http_options=types.HttpOptions(base_url=f"{url}/vertex/", api_version="v1"),
        )
    )
    return _CLIENTS[-1]


def test_job_on_scanned_objects_is_created(world: Any) -> None:
    fake, gw, url, tmp = world
    train = upload(url, tmp, "train.jsonl", jsonl(gemini("Capital of France?", "Paris."), gemini(f"mail {EMAIL}")))
    val = upload(url, tmp, "val.jsonl", jsonl(gemini("2+2?", "4")))
    job = vertex(url).tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri=train),
        config=types.CreateTuningJobConfig(
            validation_dataset=types.TuningValidationDataset(gcs_uri=val),
            tuned_model_display_name="support-bot",
            epoch_count=2,
        ),
    )
    assert job.name and job.name.startswith("projects/bastion-test/locations/europe-west4/tuningJobs/")
    sent = json.loads(fake.calls("POST", "/v1/projects/bastion-test/locations/europe-west4/tuningJobs")[-1].body)
    assert sent["supervisedTuningSpec"]["trainingDatasetUri"] == train
    assert sent["supervisedTuningSpec"]["validationDatasetUri"] == val
    got = vertex(url).tunings.get(name=job.name)
    assert got.name == job.name
    entries = _audit(gw)
    created = [e for e in entries if e.get("route") == "tuningJobs.create" and e.get("event") == "upstream_response"]
    datasets = created[-1]["datasets"]
    assert datasets["supervisedTuningSpec.trainingDatasetUri"]["decision"] == "redact"
    assert train not in json.dumps(entries)  # URIs are recorded as digests


def test_numbers_the_upstream_issued_are_not_read_as_personal_data_when_sent_back(world: Any) -> None:
    """Vertex names a job ``projects/<project number>/locations/…/tuningJobs/<19 digits>`` and the SDK sends
    that name back. On their own, 3 % of job numbers pass a card check and 10 % of project numbers a phone
    check, so that share of jobs could not be polled or cancelled. The numbers the upstream gave in its
    answer are not scanned when sent back; the same shapes it never gave still are."""
    fake, _, url, tmp = world
    fake.project_numbers["bastion-test"] = PROJECT_NUMBER_THAT_READS_AS_A_PHONE
    fake.job_numbers, numbers_after = iter(JOB_NUMBERS_THAT_READ_AS_CARDS), fake.job_numbers
    try:
        train = upload(url, tmp, "numbers.jsonl", jsonl(gemini("Capital of Italy?", "Rome.")))
        for number in JOB_NUMBERS_THAT_READ_AS_CARDS:
            job = vertex(url).tunings.tune(
                base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train)
            )
            assert (
                job.name
                == f"projects/{PROJECT_NUMBER_THAT_READS_AS_A_PHONE}/locations/europe-west4/tuningJobs/{number}"
            )
            assert vertex(url).tunings.get(name=job.name).name == job.name
        before = len(fake.received)
        project = f"projects/{PROJECT_NUMBER_THAT_READS_AS_A_PHONE}"
        never = f"{project}/locations/europe-west4/tuningJobs/{UNISSUED_CARD_LIKE_JOB_NUMBER}"
        with pytest.raises(genai_errors.ClientError) as err:
            vertex(url).tunings.get(name=never)
        assert err.value.code == 400 and "looks like personal data" in str(err.value)
        assert len(fake.received) == before  # not forwarded
        # a job made in the console: refused until a list through the gateway has named it
        elsewhere = f"{project}/locations/europe-west4/tuningJobs/{CARD_LIKE_JOB_NUMBER_MADE_ELSEWHERE}"
        fake.jobs[elsewhere] = {"name": elsewhere, "state": "JOB_STATE_RUNNING"}
        with pytest.raises(genai_errors.ClientError):
            vertex(url).tunings.get(name=elsewhere)
        listed = vertex(url).tunings.list(config=types.ListTuningJobsConfig(page_size=50))
        assert elsewhere in {j.name for j in listed}
        assert vertex(url).tunings.get(name=elsewhere).name == elsewhere
    finally:
        fake.project_numbers.clear()
        fake.job_numbers = numbers_after


def test_unscanned_and_copied_objects_are_refused(world: Any) -> None:
    fake, _, url, tmp = world
    scanned = upload(url, tmp, "scanned.jsonl", jsonl(gemini("hello")))
    fake.put(BUCKET, "direct.jsonl", jsonl(gemini("written around the gateway")))
    # a server-side copy made outside the gateway: same bytes as a scanned object, a new generation
    fake.put(BUCKET, "copied.jsonl", fake.contents[(BUCKET, "scanned.jsonl")])
    before = len(fake.calls("POST", "/v1/"))
    for uri in (f"gs://{BUCKET}/direct.jsonl", f"gs://{BUCKET}/copied.jsonl", f"gs://{BUCKET}/missing.jsonl"):
        with pytest.raises(genai_errors.ClientError) as err:
            vertex(url).tunings.tune(base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=uri))
        assert err.value.code == 403 and "did not scan" in str(err.value)
    # overwritten outside the gateway after it was scanned: the new generation is not the scanned one
    fake.put(BUCKET, "scanned.jsonl", jsonl(gemini("replaced")))
    with pytest.raises(genai_errors.ClientError, match="did not scan"):
        vertex(url).tunings.tune(base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=scanned))
    assert len(fake.calls("POST", "/v1/")) == before


def test_vertex_dataset_resource_is_refused(world: Any) -> None:
    fake, _, url, _ = world
    before = len(fake.calls("POST", "/v1/"))
    with pytest.raises(genai_errors.ClientError) as err:
        vertex(url).tunings.tune(
            base_model="gemini-2.5-flash",
            training_dataset=types.TuningDataset(
                vertex_dataset_resource="projects/bastion-test/locations/europe-west4/datasets/123"
            ),
        )
    assert err.value.code == 403 and "vertex_dataset_resource" in str(err.value)
    assert len(fake.calls("POST", "/v1/")) == before


def test_wrong_location_is_refused_under_an_eu_policy(world: Any) -> None:
    fake, _, url, tmp = world
    train = upload(url, tmp, "train-us.jsonl", jsonl(gemini("hello")))
    before = len(fake.calls("POST", "/v1/"))
    with pytest.raises(genai_errors.ClientError) as err:
        vertex(url, "us-central1").tunings.tune(
            base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train)
        )
    assert err.value.code == 403 and "us-central1 (US)" in str(err.value) and "europe-west4" in str(err.value)
    with pytest.raises(genai_errors.ClientError, match="no jurisdiction"):
        vertex(url, "asia-east1").tunings.tune(
            base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train)
        )
    assert len(fake.calls("POST", "/v1/")) == before
    job = vertex(url, "eu").tunings.tune(  # the EU multi-region is fine
        base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train)
    )
    assert job.name and "/locations/eu/" in job.name


def test_a_state_store_that_cannot_keep_an_issued_id_does_not_fail_the_created_job(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job exists upstream once Vertex answered: the client gets that answer (a retry would make a second
    job); the number it could not keep is then scanned when sent back, like any other."""
    fake, gw, url, tmp = world

    def broken(upstream: str, values: Any) -> None:
        raise StateError("the state store is down", hint="-")

    monkeypatch.setattr(gw.state, "issue", broken)
    fake.job_numbers, numbers_after = iter([UNKEPT_CARD_LIKE_JOB_NUMBER]), fake.job_numbers
    try:
        train = upload(url, tmp, "unkept.jsonl", jsonl(gemini("Capital of Spain?", "Madrid.")))
        job = vertex(url).tunings.tune(
            base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train)
        )
        assert job.name is not None and job.name.endswith(UNKEPT_CARD_LIKE_JOB_NUMBER)
        with pytest.raises(genai_errors.ClientError) as err:
            vertex(url).tunings.get(name=job.name)
        assert err.value.code == 400
    finally:
        fake.job_numbers = numbers_after


def test_a_project_number_listed_as_own_is_not_read_as_personal_data_in_a_path(world: Any) -> None:
    """The first request names the project before Vertex has: the operator lists its number in own_ids."""
    fake, gw, url, _ = world
    for number in (OWN_PROJECT_NUMBER, PROJECT_NUMBER_THAT_READS_AS_A_PHONE):  # alone, each reads as personal data
        with pytest.raises(Refusal):
            check_opaque(gw.engine, {"project": number}, "path id", "tuningJobs.list")
    h = {"authorization": f"Bearer {TOKEN}"}
    before = len(fake.calls("GET", "/v1/"))
    listed = httpx.get(f"{url}/vertex/v1/projects/{OWN_PROJECT_NUMBER}/locations/europe-west4/tuningJobs", headers=h)
    assert listed.status_code == 200 and len(fake.calls("GET", "/v1/")) == before + 1
    other = "projects/555123456789/locations/europe-west4/tuningJobs"  # neither listed nor issued
    with pytest.raises(Refusal):
        check_opaque(gw.engine, {"project": "555123456789"}, "path id", "tuningJobs.list")
    refused = httpx.get(f"{url}/vertex/v1/{other}", headers=h)
    assert refused.status_code == 400 and "upstreams.<name>.own_ids" in refused.text
    assert len(fake.calls("GET", "/v1/")) == before + 1


def test_a_service_account_listed_as_own_is_forwarded_as_written(world: Any) -> None:
    """A job's serviceAccount is an e-mail address to the policy, so it was redacted and the job got a broken
    account; the operator's own one is listed in own_ids and goes as written. Another one is still redacted."""
    fake, _, url, tmp = world
    train = upload(url, tmp, "train-sa.jsonl", jsonl(gemini("hello")))
    endpoint = f"{url}/vertex/v1/projects/bastion-test/locations/europe-west4/tuningJobs"
    h = {"authorization": f"Bearer {TOKEN}"}
    other = "someone-else@bastion-test.iam.gserviceaccount.com"
    for account, kept in ((OWN_SERVICE_ACCOUNT, True), (other, False)):
        body = {"baseModel": "m", "supervisedTuningSpec": {"trainingDatasetUri": train}, "serviceAccount": account}
        assert httpx.post(endpoint, json=body, headers=h).status_code == 200
        sent = json.loads(fake.calls("POST", "/v1/projects/bastion-test/locations/europe-west4/tuningJobs")[-1].body)
        assert (sent["serviceAccount"] == account) is kept, sent["serviceAccount"]
        entry = [e for e in _audit(world[1]) if e.get("route") == "tuningJobs.create" and e.get("event") == "decision"]
        assert entry[-1].get("own_values") == (1 if kept else None)


def test_bad_job_bodies(world: Any) -> None:
    fake, _, url, tmp = world
    train = upload(url, tmp, "train-bad.jsonl", jsonl(gemini("hello")))
    endpoint = f"{url}/vertex/v1/projects/bastion-test/locations/europe-west4/tuningJobs"
    h = {"authorization": f"Bearer {TOKEN}"}
    before = len(fake.calls("POST", "/v1/"))
    cases = [
        ({"baseModel": "m"}, 400, "exactly one"),
        ({"baseModel": "m", "supervisedTuningSpec": {}}, 400, "trainingDatasetUri' is required"),
        ({"baseModel": "m", "supervisedTuningSpec": {"trainingDatasetUri": 3}}, 400, "must be a string"),
        ({"baseModel": "m", "supervisedTuningSpec": {"trainingDatasetUri": f"gs://{BUCKET}/*"}}, 403, "no wildcard"),
        (
            {"baseModel": "m", "supervisedTuningSpec": {"trainingDatasetUri": train}, "veoTuningSpec": {}},
            400,
            "accepts",
        ),
        ({"supervisedTuningSpec": {"trainingDatasetUri": train}}, 400, "baseModel"),
    ]
    for body, status, text in cases:
        resp = httpx.post(endpoint, json=body, headers=h)
        assert resp.status_code == status, resp.text
        err = resp.json()["error"]
        assert err["code"] == status and text in err["message"] and err["status"]
    resp = httpx.post(endpoint, content=b'{"baseModel": "m", "baseModel": "n"}', headers=h)
    assert resp.status_code == 400 and resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert len(fake.calls("POST", "/v1/")) == before


def test_list_and_cancel_pass_through(world: Any) -> None:
    fake, _, url, tmp = world
    train = upload(url, tmp, "train-cancel.jsonl", jsonl(gemini("hello")))
    cl = vertex(url)
    job = cl.tunings.tune(base_model="gemini-2.5-flash", training_dataset=types.TuningDataset(gcs_uri=train))
    assert job.name is not None
    cl.tunings.cancel(name=job.name)
    assert fake.jobs[job.name]["state"] == "JOB_STATE_CANCELLING"
    assert any(j.name == job.name for j in cl.tunings.list())


def test_hosts_and_locations_map_to_jurisdictions() -> None:
    spec = get_provider("vertex")
    assert spec.jurisdiction_for("https://europe-west4-aiplatform.googleapis.com") == "EU"
    assert spec.jurisdiction_for("https://us-central1-aiplatform.googleapis.com") == "US"
    assert spec.jurisdiction_for("https://aiplatform.eu.rep.googleapis.com") == "EU"
    assert spec.jurisdiction_for("https://aiplatform.googleapis.com") is None


def _audit(gw: Gateway) -> list[dict[str, Any]]:
    gw.audit.drain()
    path = gw.settings.state_dir / "audit.jsonl"
    return [json.loads(line)["data"] for line in path.read_text().splitlines()]


# -- Gemini records (part of every object written through the gcs upstream) ---------------------------------
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        (gemini("hi"), None),
        ({**gemini("hi"), "systemInstruction": {"role": "system", "parts": [{"text": "be brief"}]}}, None),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"text": "q"}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]},
                    {"role": "model", "parts": [{"text": "a"}]},
                ]
            },
            None,
        ),
        (
            {
                "system_instruction": {"parts": [{"text": "s"}]},
                "contents": [{"role": "user", "parts": [{"text": "q"}]}],
                "completions": [
                    {"completion": {"role": "model", "parts": [{"text": "good"}]}, "score": 1},
                    {"completion": {"role": "model", "parts": [{"text": "bad"}]}, "score": 0},
                ],
            },
            None,
        ),
        ({"messages": [{"role": "user", "content": "hi"}]}, "expected 'contents'"),
        ({"contents": [{"role": "user", "parts": [{"text": "q"}]}]}, "at least one 'model' turn"),
        ({"contents": [{"role": "assistant", "parts": [{"text": "q"}]}]}, "role' must be one of user, model"),
        ({"contents": [{"role": "user", "parts": [{"text": 3}]}]}, "text' must be a string"),
        (
            {
                "contents": [
                    {"role": "user", "parts": [{"fileData": {"mimeType": "image/png", "fileUri": "gs://b/cat.png"}}]}
                ]
            },
            "fileData.fileUri",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "audio/mp3", "data": "AAAA"}}]}]},
            "other than image/png",
        ),
        (
            {"contents": [{"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}]},
            "inlineData",
        ),
        (
            {**gemini("q"), "completions": [{"completion": {"role": "model", "parts": [{"text": "a"}]}, "score": 1}]},
            "two {completion, score}",
        ),
        ({**gemini("q"), "extra": 1}, "has only"),
    ],
)
def test_gemini_record_shapes(record: Any, problem: str | None) -> None:
    from bastion.adapters.vertex.records import record_problem

    got = record_problem(record)
    assert (got is None) if problem is None else (got is not None and problem in got), got


def test_object_with_media_by_reference_is_refused_and_not_stored(world: Any) -> None:
    fake, _, url, tmp = world
    rec = {"contents": [{"role": "user", "parts": [{"text": "what is this?"},
                                                   {"fileData": {"mimeType": "image/png", "fileUri": "gs://x/cat.png"}}]},
                        {"role": "model", "parts": [{"text": "a cat"}]}]}  # fmt: skip
    before = len(fake.received)
    with pytest.raises(Exception, match=r"fileData\.fileUri") as err:
        upload(url, tmp, "media.jsonl", jsonl(gemini("fine"), rec))
    assert "record 2" in str(err.value)
    wrong = {"messages": [{"role": "user", "content": "OpenAI format"}, {"role": "assistant", "content": "x"}]}
    with pytest.raises(Exception, match="not a Gemini tuning record"):
        upload(url, tmp, "openai.jsonl", jsonl(wrong))
    assert fake.received[before:] == []


def test_preference_object_is_stored_and_usable(world: Any) -> None:
    fake, _, url, tmp = world
    rec = {
        "contents": [{"role": "user", "parts": [{"text": f"write to {EMAIL}"}]}],
        "completions": [
            {"completion": {"role": "model", "parts": [{"text": "Dear Jane"}]}, "score": 1},
            {"completion": {"role": "model", "parts": [{"text": "no"}]}, "score": 0},
        ],
    }
    uri = upload(url, tmp, "pref.jsonl", jsonl(rec))
    assert EMAIL.encode() not in fake.contents[(BUCKET, "pref.jsonl")]
    job = vertex(url).tunings.tune(
        base_model="gemini-2.5-flash",
        training_dataset=types.TuningDataset(gcs_uri=uri),
        config=types.CreateTuningJobConfig(method="PREFERENCE_TUNING"),
    )
    sent = json.loads(fake.calls("POST", "/v1/projects/")[-1].body)
    assert job.name and sent["preferenceOptimizationSpec"]["trainingDatasetUri"] == uri
