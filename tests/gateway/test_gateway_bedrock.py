"""Bedrock model customization through the gateway: boto3 ``bedrock`` -> gateway -> moto (server mode).

Training data is written through the gateway's S3 upstream first (boto3 ``s3``); the job may only
name what the gateway scanned. Upstream: moto's server mode behind a botocore SigV4 check of the
gateway's signature (tests/gateway/aws_support.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_support import ENV, MotoUpstream, aws_block, s3_client, self_signed
from botocore.config import Config
from botocore.exceptions import ClientError

from bastion.gateway.app import create_gateway
from bastion.gateway.config import config_from_mapping
from bastion.gateway.serve import ServerThread
from bastion.policies import load_policy_text

BUCKET = "bedrock-training"
ROLE = "arn:aws:iam::123456789012:role/bedrock-ft"
EMAIL = "jane.roe@example.org"
EU_POLICY = """
version: 1
name: eu-only
classifications: [public, internal, personal]
default_classification: internal
detectors:
  - {id: pii.email, type: email, action: redact, classification: personal}
residency:
  - {id: res.eu-only, classifications: [public, internal, personal], jurisdictions: [EU]}
"""


class Rig:
    def __init__(self, moto: MotoUpstream, url: str, cafile: Path) -> None:
        self.moto, self.url, self.cafile = moto, url, cafile

    def s3(self) -> Any:
        return s3_client(f"{self.url}/s3", self.cafile)

    def bedrock(self, upstream: str = "bedrock") -> Any:
        from aws_support import CLIENT_KEY_ID, CLIENT_SECRET

        return boto3.client(
            "bedrock",
            endpoint_url=f"{self.url}/{upstream}",
            aws_access_key_id=CLIENT_KEY_ID,
            aws_secret_access_key=CLIENT_SECRET,
            region_name="us-west-2",
            verify=str(self.cafile),
            config=Config(retries={"max_attempts": 1}),
        )


def _gateway(
    tmp: Path, policy: Any, moto: MotoUpstream, cert: Path, key: Path, name: str, s3_region: str = "us-west-2"
) -> ServerThread:
    cfg = config_from_mapping(
        {
            "upstreams": {
                "s3": {"base_url": moto.url, "region": s3_region, "aws": aws_block()},
                "bedrock": {"base_url": moto.url, "region": "us-west-2", "aws": aws_block()},
                "bedrock-eu": {
                    "adapter": "bedrock",
                    "base_url": moto.url,
                    "region": "eu-central-1",
                    "aws": aws_block(),
                },
            },
            "gateway": {"state_dir": str(tmp / name)},
        }
    )
    gw = create_gateway(cfg, policy, policy_name=name)
    return ServerThread(gw.app, ssl_certfile=str(cert), ssl_keyfile=str(key)).start()


@pytest.fixture(scope="module")
def rigs(tmp_path_factory: pytest.TempPathFactory, policy: Any) -> Iterator[tuple[Rig, Rig]]:
    """(a gateway with the test policy, a gateway with an EU-only policy), one moto behind both."""
    tmp = tmp_path_factory.mktemp("bedrockgw")
    mp = pytest.MonkeyPatch()
    for k, v in ENV.items():
        mp.setenv(k, v)
    moto = MotoUpstream().start()
    moto.check.region = "us-west-2"
    direct = moto.direct()
    direct.create_bucket(Bucket=BUCKET)
    cert, key = self_signed(tmp)
    main = _gateway(tmp, policy, moto, cert, key, "main")
    # the EU gateway's S3 upstream is in Frankfurt (allowed by its policy); its Bedrock upstream is us-west-2
    eu = _gateway(tmp, load_policy_text(EU_POLICY, source="eu-only.yaml"), moto, cert, key, "eu", "eu-central-1")
    try:
        yield Rig(moto, f"https://127.0.0.1:{main.port}", cert), Rig(moto, f"https://127.0.0.1:{eu.port}", cert)
    finally:
        main.stop()
        eu.stop()
        moto.stop()
        mp.undo()
    assert not moto.check.bad, moto.check.bad


@pytest.fixture
def rig(rigs: tuple[Rig, Rig]) -> Rig:
    return rigs[0]


def claude(n: int, extra: str = "") -> bytes:
    return b"".join(
        json.dumps(
            {
                "system": "be brief",
                "messages": [{"role": "user", "content": f"q{i} {extra}"}, {"role": "assistant", "content": "a"}],
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def job(rig: Rig, name: str, train: str, *, validators: list[str] = (), **extra: Any) -> dict[str, Any]:  # type: ignore[assignment]
    kw: dict[str, Any] = {
        "jobName": name,
        "customModelName": f"{name}-model",
        "roleArn": ROLE,
        "baseModelIdentifier": "anthropic.claude-3-haiku-20240307-v1:0:200k",
        "trainingDataConfig": {"s3Uri": train},
        "outputDataConfig": {"s3Uri": f"s3://{BUCKET}/output/"},
        "hyperParameters": {"epochCount": "1"},
        **extra,
    }
    if validators:
        kw["validationDataConfig"] = {"validators": [{"s3Uri": v} for v in validators]}
    return dict(rig.bedrock().create_model_customization_job(**kw))


def test_job_on_scanned_objects_is_created_and_passes_through(rig: Rig) -> None:
    rig.s3().put_object(Bucket=BUCKET, Key="ok/train.jsonl", Body=claude(5, EMAIL))
    rig.s3().put_object(Bucket=BUCKET, Key="ok/valid.jsonl", Body=claude(2))
    out = job(rig, "ok-job", f"s3://{BUCKET}/ok/train.jsonl", validators=[f"s3://{BUCKET}/ok/valid.jsonl"])
    assert out["jobArn"].startswith("arn:aws:bedrock:us-west-2:")
    # by name: moto looks jobs up by name only (it does not decode an ARN in the path)
    got = rig.bedrock().get_model_customization_job(jobIdentifier="ok-job")
    assert got["trainingDataConfig"]["s3Uri"] == f"s3://{BUCKET}/ok/train.jsonl"
    listed = rig.bedrock().list_model_customization_jobs()
    assert any(j["jobName"] == "ok-job" for j in listed["modelCustomizationJobSummaries"])
    rig.bedrock().stop_model_customization_job(jobIdentifier="ok-job")


def test_prefix_of_scanned_objects_passes_and_one_unscanned_object_fails_it(rig: Rig) -> None:
    rig.s3().put_object(Bucket=BUCKET, Key="folder/a.jsonl", Body=claude(2))
    rig.s3().put_object(Bucket=BUCKET, Key="folder/b.jsonl", Body=claude(2))
    job(rig, "prefix-job", f"s3://{BUCKET}/folder/")
    rig.moto.direct().put_object(Bucket=BUCKET, Key="folder/c.jsonl", Body=claude(2))  # bypassed the gateway
    with pytest.raises(ClientError) as err:
        job(rig, "prefix-job-2", f"s3://{BUCKET}/folder/")
    assert err.value.response["Error"]["Code"] == "unscanned_object"


def test_job_on_unscanned_or_copied_object_is_refused(rig: Rig) -> None:
    direct = rig.moto.direct()
    direct.put_object(Bucket=BUCKET, Key="direct/train.jsonl", Body=claude(3))
    with pytest.raises(ClientError) as err:
        job(rig, "unscanned-job", f"s3://{BUCKET}/direct/train.jsonl")
    assert err.value.response["Error"]["Code"] == "unscanned_object"
    assert "trainingDataConfig.s3Uri" in err.value.response["Error"]["Message"]
    # a server-side copy of a scanned object (made outside the gateway, which refuses copies) is not scanned
    rig.s3().put_object(Bucket=BUCKET, Key="copy/src.jsonl", Body=claude(3))
    direct.copy_object(Bucket=BUCKET, Key="copy/dst.jsonl", CopySource={"Bucket": BUCKET, "Key": "copy/src.jsonl"})
    with pytest.raises(ClientError) as err:
        job(rig, "copied-job", f"s3://{BUCKET}/copy/dst.jsonl")
    assert err.value.response["Error"]["Code"] == "unscanned_object"
    # a scanned object overwritten outside the gateway: its new ETag is not in the ledger
    direct.put_object(Bucket=BUCKET, Key="copy/src.jsonl", Body=claude(4, "changed"))
    with pytest.raises(ClientError) as err:
        job(rig, "overwritten-job", f"s3://{BUCKET}/copy/src.jsonl")
    assert err.value.response["Error"]["Code"] == "unscanned_object"
    # an unscanned validator fails the job too
    rig.s3().put_object(Bucket=BUCKET, Key="v/train.jsonl", Body=claude(2))
    with pytest.raises(ClientError) as err:
        job(rig, "validator-job", f"s3://{BUCKET}/v/train.jsonl", validators=[f"s3://{BUCKET}/direct/train.jsonl"])
    assert "validators[0]" in err.value.response["Error"]["Message"]
    jobs = rig.moto.direct("bedrock").list_model_customization_jobs()["modelCustomizationJobSummaries"]
    assert not {j["jobName"] for j in jobs} & {"unscanned-job", "copied-job", "overwritten-job", "validator-job"}


def test_invocation_log_source_is_refused(rig: Rig) -> None:
    with pytest.raises(ClientError) as err:
        rig.bedrock().create_model_customization_job(
            jobName="logs-job",
            customModelName="logs-model",
            roleArn=ROLE,
            baseModelIdentifier="amazon.nova-micro-v1:0",
            trainingDataConfig={"invocationLogsConfig": {"invocationLogSource": {"s3Uri": f"s3://{BUCKET}/logs/"}}},
            outputDataConfig={"s3Uri": f"s3://{BUCKET}/output/"},
        )
    assert err.value.response["Error"]["Code"] == "invocation_logs_not_allowed"


def test_eu_only_policy_refuses_a_us_job_and_says_why(rigs: tuple[Rig, Rig]) -> None:
    _, eu = rigs
    eu.s3().put_object(Bucket=BUCKET, Key="eu/train.jsonl", Body=claude(3))
    with pytest.raises(ClientError) as err:
        job(eu, "eu-job", f"s3://{BUCKET}/eu/train.jsonl")
    msg = err.value.response["Error"]["Message"]
    assert err.value.response["Error"]["Code"] == "residency"
    assert "only in US regions" in msg and "us-west-2" in msg


def test_region_without_model_customization_is_refused(rig: Rig) -> None:
    with pytest.raises(ClientError) as err:
        rig.bedrock("bedrock-eu").create_model_customization_job(
            jobName="frankfurt",
            customModelName="frankfurt-model",
            roleArn=ROLE,
            baseModelIdentifier="amazon.nova-micro-v1:0",
            trainingDataConfig={"s3Uri": f"s3://{BUCKET}/ok/train.jsonl"},
            outputDataConfig={"s3Uri": f"s3://{BUCKET}/output/"},
        )
    assert err.value.response["Error"]["Code"] == "region_not_supported"
    assert "us-east-1, us-west-2 only" in err.value.response["Error"]["Message"]


def test_tampered_job_signature_is_refused(rig: Rig) -> None:
    rig.s3().put_object(Bucket=BUCKET, Key="t/train.jsonl", Body=claude(2))
    client = rig.bedrock()

    def tamper(request: Any, **_: Any) -> None:
        request.body = request.body.replace(b"t-job", b"u-job")  # signed body changed after signing

    client.meta.events.register("before-send.bedrock.CreateModelCustomizationJob", tamper)
    with pytest.raises(ClientError) as err:
        client.create_model_customization_job(
            jobName="t-job",
            customModelName="t-model",
            roleArn=ROLE,
            baseModelIdentifier="amazon.nova-micro-v1:0",
            trainingDataConfig={"s3Uri": f"s3://{BUCKET}/t/train.jsonl"},
            outputDataConfig={"s3Uri": f"s3://{BUCKET}/output/"},
        )
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


def test_bedrock_record_formats_are_checked_on_upload(rig: Rig) -> None:
    s3 = rig.s3()
    converse = {
        "schemaVersion": "bedrock-conversation-2024",
        "system": [{"text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"text": f"write to {EMAIL}"}]},
            {"role": "assistant", "content": [{"text": "ok"}]},
        ],
    }
    s3.put_object(Bucket=BUCKET, Key="fmt/converse.jsonl", Body=json.dumps(converse).encode() + b"\n")
    stored = rig.moto.direct().get_object(Bucket=BUCKET, Key="fmt/converse.jsonl")["Body"].read()
    assert EMAIL.encode() not in stored and json.loads(stored)["schemaVersion"] == "bedrock-conversation-2024"
    s3.put_object(Bucket=BUCKET, Key="fmt/text.jsonl", Body=b'{"prompt": "p", "completion": "c"}\n')
    bad = [
        {"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]},  # Claude order
        {"schemaVersion": "bedrock-conversation-2023", "messages": []},
        {"prompt": "p"},
    ]
    for i, record in enumerate(bad):
        with pytest.raises(ClientError) as err:
            s3.put_object(Bucket=BUCKET, Key=f"fmt/bad{i}.jsonl", Body=json.dumps(record).encode() + b"\n")
        assert err.value.response["Error"]["Code"] == "invalid_record"
    # media in records must be objects the gateway scanned (an image the gateway never saw is refused)
    image = dict(converse)
    image["messages"] = [
        {
            "role": "user",
            "content": [
                {"text": "what is this"},
                {"image": {"format": "png", "source": {"s3Location": {"uri": f"s3://{BUCKET}/img/cat.png"}}}},
            ],
        },
        {"role": "assistant", "content": [{"text": "a cat"}]},
    ]
    with pytest.raises(ClientError) as err:
        s3.put_object(Bucket=BUCKET, Key="fmt/image.jsonl", Body=json.dumps(image).encode() + b"\n")
    assert err.value.response["Error"]["Code"] == "unscanned_object"
