"""Azure OpenAI on the gateway core: ``https://{resource}.openai.azure.com``.

Two route forms, the same API as OpenAI: the classic data plane ``/openai/...?api-version=YYYY-MM-DD``
(``api-version`` required) and ``/openai/v1/...`` (``api-version`` optional: ``v1`` | ``preview``).
Credentials: ``api-key`` or ``Authorization: Bearer`` (Entra ID); a gateway-held key is sent as
``api-key``. Refused by default: ``POST /openai/files/import`` (Azure downloads any URL itself, so the
gateway never sees the data) and checkpoint copies to another resource/region. Residency: the
resource's region, given as the upstream's ``jurisdiction``. Client: ``AzureOpenAI(azure_endpoint=
"http://<gateway>/<upstream>")``.
"""

from __future__ import annotations

from bastion.adapters.openai import spec as openai
from bastion.adapters.openai import steps
from bastion.gateway.spec import Opaque, ProviderSpec, RouteSpec, json_error

API_VERSION = Opaque("api-version", r"[0-9]{4}-[0-9]{2}-[0-9]{2}(-preview)?", required=True)
V1_VERSION = Opaque("api-version", r"v1|preview")
IMPORT_REFUSED = (
    "files/import makes Azure download the file from a URL itself, so the gateway never sees (or scans) "
    "the data; it is refused unless the operator lists files.import"
)
COPY_REFUSED = "copying a fine-tuned checkpoint to another resource or region is refused unless the operator lists it"
IDS = {
    **openai.IDS,
    "file_id": r"(file|assistant)-[A-Za-z0-9_-]{1,96}",
    "job_id": r"ftjob-[A-Za-z0-9_-]{1,96}",
    "batch_id": r"batch_[A-Za-z0-9_-]{1,96}",
    "upload_id": r"upload_[A-Za-z0-9_-]{1,96}",
    "checkpoint_id": r"ftchkpt-[A-Za-z0-9_-]{1,96}|ftckpt_[A-Za-z0-9]{1,96}",
}

_CLASSIC = tuple(
    r
    for r in openai.routes("/openai", query=(API_VERSION,))
    if r.name.split(".")[0] in ("files", "uploads", "fine_tuning", "batches", "models")
)
_V1 = openai.routes("/openai/v1", query=(V1_VERSION,))
_REFUSED = (
    RouteSpec(
        "POST", "/openai/files/import", "files.import", body="json", query=(API_VERSION,), refused=IMPORT_REFUSED
    ),
    RouteSpec(
        "POST",
        "/openai/v1/fine_tuning/jobs/{job_id}/checkpoints/{checkpoint_id}/copy",
        "fine_tuning.jobs.checkpoints.copy",
        body="json",
        query=(V1_VERSION,),
        headers=(Opaque("aoai-copy-ft-checkpoints", r"preview"),),
        refused=COPY_REFUSED,
    ),
)

# Azure regions that host Azure OpenAI resources -> jurisdiction for residency rules ("EU" for EU member
# states; other countries by ISO code). Give `jurisdiction:` in the upstream map for a region not listed.
REGIONS = {
    **dict.fromkeys(
        (
            "westeurope",
            "northeurope",
            "swedencentral",
            "francecentral",
            "germanywestcentral",
            "italynorth",
            "polandcentral",
            "spaincentral",
        ),
        "EU",
    ),
    "switzerlandnorth": "CH",
    "switzerlandwest": "CH",
    "norwayeast": "NO",
    "uksouth": "GB",
    "ukwest": "GB",
    **dict.fromkeys(("eastus", "eastus2", "westus", "westus3", "northcentralus", "southcentralus", "centralus"), "US"),
    "canadaeast": "CA",
    "canadacentral": "CA",
    "japaneast": "JP",
    "australiaeast": "AU",
    "koreacentral": "KR",
    "southindia": "IN",
    "brazilsouth": "BR",
    "southafricanorth": "ZA",
    "uaenorth": "AE",
}

SPEC = ProviderSpec(
    name="azure_openai",
    routes=(*_REFUSED, *_CLASSIC, *_V1),
    ids=IDS,
    headers=(
        *openai.HEADERS[3:],  # idempotency-key (consumed)
        Opaque("aoai-evals", r"preview"),
        Opaque("x-ms-client-request-id", r"[0-9a-fA-F-]{36}"),
    ),
    credentials={"api-key": "key", "authorization": "bearer"},
    held_key="api-key",
    errors=json_error,
    steps=steps.STEPS,
    host_patterns=(r"[a-z0-9-]{2,64}\.openai\.azure\.com", r"[a-z0-9-]{2,64}\.cognitiveservices\.azure\.com"),
    regions=REGIONS,
)
