"""AWS regions as jurisdictions (residency), and the region of an S3 / Bedrock host.

A region maps to the jurisdiction whose law the data center is under: ``eu-west-2`` (London) is GB
and ``eu-central-2`` (Zurich) is CH, not EU. Regions not listed need ``upstreams.<name>.jurisdiction``.
"""

from __future__ import annotations

import re

from bastion.errors import ConfigError
from bastion.gateway.config import UpstreamConfig

REGIONS: dict[str, str] = {
    "us-east-1": "US",
    "us-east-2": "US",
    "us-west-1": "US",
    "us-west-2": "US",
    "us-gov-east-1": "US",
    "us-gov-west-1": "US",
    "ca-central-1": "CA",
    "ca-west-1": "CA",
    "eu-central-1": "EU",
    "eu-west-1": "EU",
    "eu-west-3": "EU",
    "eu-north-1": "EU",
    "eu-south-1": "EU",
    "eu-south-2": "EU",
    "eu-west-2": "GB",
    "eu-central-2": "CH",
    "ap-northeast-1": "JP",
    "ap-northeast-3": "JP",
    "ap-northeast-2": "KR",
    "ap-south-1": "IN",
    "ap-south-2": "IN",
    "ap-southeast-1": "SG",
    "ap-southeast-2": "AU",
    "ap-southeast-4": "AU",
    "ap-east-1": "HK",
    "sa-east-1": "BR",
    "me-central-1": "AE",
    "il-central-1": "IL",
    "af-south-1": "ZA",
}
_HOST_REGION = re.compile(
    r"(?:^|\.)(?P<service>s3|bedrock|bedrock-fips)[.-](?:dualstack\.)?(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})"
    r"\.amazonaws\.com$"
)


def region_of_host(host: str) -> str | None:
    """``eu-central-1`` for ``s3.eu-central-1.amazonaws.com``, ``bucket.s3.…``, ``bedrock.…``; else None."""
    m = _HOST_REGION.search(host.lower())
    return m["region"] if m else None


def known_hosts(service: str) -> dict[str, str]:
    """Host -> jurisdiction for every listed region (what a provider spec's ``jurisdictions`` holds)."""
    return {f"{service}.{r}.amazonaws.com": j for r, j in REGIONS.items()}


def upstream_region(cfg: UpstreamConfig, upstream: str) -> str:
    """The region an upstream signs for: ``region`` in the config, else the one in its base URL's host."""
    import httpx

    region = cfg.region or region_of_host(httpx.URL(cfg.base_url).host)
    if region is None:
        raise ConfigError(
            f"upstream {upstream!r}: the AWS region cannot be taken from {cfg.base_url}",
            hint="set upstreams.<name>.region (e.g. us-west-2): SigV4 signs for one region",
        )
    return region


__all__ = ["REGIONS", "known_hosts", "region_of_host", "upstream_region"]
