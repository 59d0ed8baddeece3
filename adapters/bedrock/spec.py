"""Amazon Bedrock model customization (``bedrock.<region>.amazonaws.com``) on the gateway core.

Bedrock never receives training bytes itself: a job names ``s3://`` URIs, and Bedrock reads them
with the job's role. So the gateway checks what a job may read:

- ``POST /model-customization-jobs``: fields allow-listed; ``trainingDataConfig.s3Uri`` and every
  ``validationDataConfig.validators[].s3Uri`` must name objects this gateway scanned (ledger entry for
  the object's *current* ETag in S3; a prefix only if every object under it was scanned);
  ``trainingDataConfig.invocationLogsConfig`` (training on invocation logs the gateway never saw) is
  refused; the job's region is its jurisdiction, checked against the policy's residency rules for the
  classification of the data it reads (fine-tuning exists in US regions only: an EU-only policy refuses
  with a message that says so; a region without model customization is refused as such). Every string
  of the body is scanned (a redacted job name is forwarded redacted); the body the gateway sends is
  signed with its own credentials, so any change is re-signed.
- get / list / stop: pass-through (client signature verified, request re-signed).

Auth: SigV4 (service ``bedrock``), verified against ``aws.clients`` like S3. Errors: Bedrock's rest-json
shape (``{"__type", "message"}``). Client: ``boto3.client("bedrock", endpoint_url="https://<gateway>/<upstream>")``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.responses import Response

from bastion.adapters.aws.regions import REGIONS, known_hosts, upstream_region
from bastion.adapters.aws.sigv4 import AwsKeys, load_keys
from bastion.adapters.s3.steps import authenticate
from bastion.errors import ConfigError
from bastion.gateway.errors import Refusal
from bastion.gateway.proxy import read_limited
from bastion.gateway.spec import Opaque, ProviderSpec, RouteSpec

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway
    from bastion.gateway.spec import Step

#: regions with model customization (PROVIDERS.md §9.2: the Bedrock user guide's table lists no other)
CUSTOMIZATION_REGIONS = ("us-east-1", "us-west-2")
JOB = (
    r"arn:aws(-[a-z]+)*:bedrock:[a-z0-9-]{1,20}:[0-9]{12}:model-customization-job/[A-Za-z0-9.:+-]{1,128}(/[a-z0-9]{12})?"
    r"|[a-zA-Z0-9](-*[a-zA-Z0-9+.-]){0,62}"
)
_ARN = re.compile(JOB.split("|", 1)[0])


def issued_arns(doc: Any) -> Iterator[str]:
    """The job ARNs an answer names (GetModelCustomizationJob, or a list's summaries): the SDK sends one
    back to get or stop the job, and an account number in it reads as an id number now and then."""
    jobs = doc.get("modelCustomizationJobSummaries") if isinstance(doc, dict) and "jobArn" not in doc else [doc]
    for job in jobs if isinstance(jobs, list) else ():
        arn = job.get("jobArn") if isinstance(job, dict) else None
        if isinstance(arn, str) and _ARN.fullmatch(arn) is not None:
            yield arn


JOB_FIELDS = frozenset(
    {
        "jobName",
        "customModelName",
        "roleArn",
        "clientRequestToken",
        "baseModelIdentifier",
        "customizationType",
        "customModelKmsKeyId",
        "jobTags",
        "customModelTags",
        "trainingDataConfig",
        "validationDataConfig",
        "outputDataConfig",
        "hyperParameters",
        "vpcConfig",
        "customizationConfig",
    }
)
MAX_RESPONSE = 4 * 1024 * 1024


def bedrock_error(refusal: Refusal) -> tuple[str, bytes]:
    """Bedrock's rest-json error: botocore reads ``__type`` as the code and ``message``."""
    return "application/json", json.dumps({"__type": refusal.kind, "message": refusal.client_message}).encode()


def setup(gw: Gateway, upstream: str) -> AwsKeys:
    cfg = gw.config.upstreams[upstream]
    if cfg.aws is None:
        raise ConfigError(
            f"upstream {upstream!r} (Bedrock) needs an 'aws' block: the gateway's own credentials and the client keys",
            hint="aws: {access_key_id_env: ..., secret_access_key_env: ..., clients: {<access key id>: <ENV>}}",
        )
    return load_keys(cfg.aws, upstream, upstream_region(cfg, upstream))


def _bad(message: str, param: str | None = None) -> Refusal:
    return Refusal(400, "ValidationException", message, param=param)


def _uris(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, URI) of every S3 object the job would train or validate on; refusals for what it may not read."""
    training = doc.get("trainingDataConfig")
    if not isinstance(training, dict):
        raise _bad("'trainingDataConfig' is required (an object with 's3Uri')", "trainingDataConfig")
    if "invocationLogsConfig" in training:
        raise Refusal(
            403,
            "invocation_logs_not_allowed",
            "training on Bedrock invocation logs (trainingDataConfig.invocationLogsConfig) is refused: "
            "the gateway never scanned those logs",
            param="trainingDataConfig.invocationLogsConfig",
            hint="export the records you want, upload them through the gateway, and name that object in s3Uri",
        )
    if set(training) != {"s3Uri"} or not isinstance(training["s3Uri"], str):
        raise _bad("'trainingDataConfig' must be {'s3Uri': 's3://bucket/key'}", "trainingDataConfig.s3Uri")
    out = [("trainingDataConfig.s3Uri", training["s3Uri"])]
    validation = doc.get("validationDataConfig")
    if validation is not None:
        validators = validation.get("validators") if isinstance(validation, dict) else None
        if not isinstance(validation, dict) or set(validation) != {"validators"} or not isinstance(validators, list):
            raise _bad("'validationDataConfig' must be {'validators': [{'s3Uri': ...}]}", "validationDataConfig")
        for i, v in enumerate(validators):
            where = f"validationDataConfig.validators[{i}].s3Uri"
            if not isinstance(v, dict) or set(v) != {"s3Uri"} or not isinstance(v["s3Uri"], str):
                raise _bad(f"'{where}' must be an s3:// URI", where)
            out.append((where, v["s3Uri"]))
    return out


def _residency(gw: Gateway, ex: Exchange, classification: str | None) -> None:
    region = keys_region(gw, ex)
    try:
        gw.check_residency(ex, classification)
    except Refusal as refused:
        if refused.kind != "residency":
            raise
        raise Refusal(
            403,
            "residency",
            f"{refused.client_message}. Bedrock model customization runs only in US regions "
            f"({', '.join(CUSTOMIZATION_REGIONS)}; this upstream is {region}), so data that the policy keeps "
            "out of the US cannot be fine-tuned on Bedrock",
            rule_ids=refused.details.rule_ids,
            hint="fine-tune where the policy allows the data to go, or redact it to a classification allowed in the US",
        ) from None


def keys_region(gw: Gateway, ex: Exchange) -> str:
    keys = gw.provider_state.get(ex.upstream_name)
    assert isinstance(keys, AwsKeys)
    return keys.region


async def create_job(gw: Gateway, ex: Exchange) -> Response:
    from bastion.adapters.s3.ledger import resolve

    raw = await gw.read_body(ex)
    authenticate(gw, ex, "bedrock", body=raw)
    region = keys_region(gw, ex)
    if region not in CUSTOMIZATION_REGIONS:
        raise Refusal(
            400,
            "region_not_supported",
            f"Bedrock model customization is offered in {', '.join(CUSTOMIZATION_REGIONS)} only, not in {region}",
            hint="point the upstream at bedrock.us-east-1/us-west-2 if the policy allows the data to go to the US",
        )
    if not raw.strip():
        raise _bad("CreateModelCustomizationJob needs a JSON body")
    scan = await gw.scan_json(ex, raw, "model customization job")
    doc = scan.doc
    if not isinstance(doc, dict):
        raise _bad("the request body must be a JSON object")
    extra = set(doc) - JOB_FIELDS
    if extra:
        raise _bad(
            "the job has a field the gateway does not forward; accepted: " + ", ".join(sorted(JOB_FIELDS)),
        )
    refs = _uris(doc)
    bad, items = await resolve(gw, [uri for _, uri in refs])
    if bad:
        where = [w for w, uri in refs if uri in bad]
        raise Refusal(
            403,
            "unscanned_object",
            f"{', '.join(where)} names S3 data this gateway did not scan (unknown, changed since, copied, "
            "or a prefix with an unscanned object), so the job may not read it",
            param=where[0],
            hint="upload the training data through the gateway's S3 upstream and name that object",
        )
    ex.audit["objects"] = [
        {
            "ref_sha256": "sha256:" + hashlib.sha256(i.ref.encode()).hexdigest()[:16],
            "decision": i.decision,
            "output_sha256": i.output_sha256,
            "records": i.records,
        }
        for i in items
    ]
    classes: list[str | None] = [*sorted({i.classification for i in items if i.classification is not None})]
    for classification in classes or [None]:  # None: the policy's default classification
        _residency(gw, ex, classification)
    decision = "redact" if scan.changed else "allow"
    await gw.record(ex, decision, event="decision")
    reply = await gw.send(ex, content=scan.body, content_type="application/json")
    if reply.response.status_code in (200, 201):
        body = await read_limited(reply.response, MAX_RESPONSE, "CreateModelCustomizationJob")
        try:
            arn = json.loads(body).get("jobArn")
        except (ValueError, AttributeError):
            arn = None
        safe = arn if isinstance(arn, str) and len(arn) < 256 and arn.isprintable() else None
        await gw.record(ex, decision, event="upstream_response", status=reply.response.status_code, job_arn=safe)
        await gw.note_issued(ex, issued_arns({"jobArn": safe}))
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
        return gw.buffered_response(reply.response.status_code, body, reply.response.headers)
    return await gw.relay(ex, reply, decision, event="upstream_response", buffer=True)


async def pass_through(gw: Gateway, ex: Exchange) -> Response:
    authenticate(gw, ex, "bedrock", body=b"")
    path = ex.route.path.replace("{job+}", quote(ex.ids["job"], safe="")) if "job" in ex.ids else ex.route.path
    if ex.route.method != "GET":
        await gw.record(ex, "allow", event="decision")
    reply = await gw.send(ex, path=path)
    return await gw.relay(ex, reply, "allow", event="upstream_response")


STEPS: dict[str, Step] = {"bedrock.jobs.create": create_job, "bedrock.pass_through": pass_through}
_LIST_QUERY = (
    Opaque("creationTimeAfter", r"[0-9T:.Z+-]{1,40}"),
    Opaque("creationTimeBefore", r"[0-9T:.Z+-]{1,40}"),
    Opaque("statusEquals", r"InProgress|Completed|Failed|Stopping|Stopped"),
    Opaque("nameContains", r"[a-zA-Z0-9-]{1,63}"),
    Opaque("maxResults", r"[0-9]{1,4}"),
    Opaque("nextToken", r"[A-Za-z0-9+/=_-]{1,2048}"),
    Opaque("sortBy", r"CreationTime"),
    Opaque("sortOrder", r"Ascending|Descending"),
)

SPEC = ProviderSpec(
    name="bedrock",
    ids={"job": JOB},
    credentials={},  # SigV4: verified by the steps, never forwarded
    errors=bedrock_error,
    steps=STEPS,
    regions=REGIONS,
    jurisdictions=known_hosts("bedrock"),
    setup=setup,
    routes=(
        RouteSpec(
            "POST",
            "/model-customization-jobs",
            "model_customization_jobs.create",
            step="bedrock.jobs.create",
            body="json",
            default="always",
        ),
        RouteSpec(
            "GET",
            "/model-customization-jobs",
            "model_customization_jobs.list",
            step="bedrock.pass_through",
            default="on",
            query=_LIST_QUERY,
            issued=issued_arns,
        ),
        RouteSpec(
            "POST",
            "/model-customization-jobs/{job+}/stop",
            "model_customization_jobs.stop",
            step="bedrock.pass_through",
            default="on",
        ),
        RouteSpec(
            "GET",
            "/model-customization-jobs/{job+}",
            "model_customization_jobs.get",
            step="bedrock.pass_through",
            default="on",
            issued=issued_arns,
        ),
    ),
)

__all__ = ["CUSTOMIZATION_REGIONS", "SPEC", "bedrock_error"]
