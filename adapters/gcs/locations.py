"""Google Cloud locations -> jurisdictions (residency), shared by Cloud Storage hosts and Vertex AI paths.

Only locations whose country is certain are mapped; anything else (``global``, ``asia-*``, dual-regions)
has no jurisdiction here and an upstream there must name one in its configuration. ``europe-west2``
(London) is GB and ``europe-west6`` (Zurich) CH: neither is in the EU.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

EU_REGIONS = frozenset(
    {
        "europe-central2",
        "europe-north1",
        "europe-north2",
        "europe-southwest1",
        "europe-west1",
        "europe-west3",
        "europe-west4",
        "europe-west8",
        "europe-west9",
        "europe-west10",
        "europe-west12",
    }
)
OTHER = {"europe-west2": "GB", "europe-west6": "CH", "eu": "EU", "us": "US"}
US_REGION = re.compile(r"us-(central|east|west|south)[0-9]{1,2}")
LOCATION = r"[a-z][a-z0-9-]{1,40}"


def jurisdiction_of(location: str) -> str | None:
    """``EU`` for europe-west4 or the ``eu`` multi-region, ``US`` for us-central1, ..., else None."""
    loc = location.lower()
    if loc in EU_REGIONS:
        return "EU"
    if loc in OTHER:
        return OTHER[loc]
    if US_REGION.fullmatch(loc):
        return "US"
    return None


_REP = re.compile(rf"storage\.(?P<loc>{LOCATION})\.rep\.googleapis\.com")
_LOCATIONAL = re.compile(rf"(?P<loc>{LOCATION})-storage\.googleapis\.com")
_VERTEX = re.compile(
    rf"(?P<loc>{LOCATION})-aiplatform\.googleapis\.com|aiplatform\.(?P<rep>eu|us)\.rep\.googleapis\.com"
)


class HostJurisdictions(Mapping[str, str]):
    """``ProviderSpec.jurisdictions`` computed from a host name (regional and locational endpoints)."""

    def __init__(self, *patterns: re.Pattern[str]) -> None:
        self._patterns = patterns

    def __getitem__(self, host: str) -> str:
        for rx in self._patterns:
            m = rx.fullmatch(host)
            if m:
                loc = next(v for v in m.groupdict().values() if v)
                found = jurisdiction_of(loc)
                if found is not None:
                    return found
        raise KeyError(host)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


STORAGE_HOSTS = HostJurisdictions(_REP, _LOCATIONAL)
VERTEX_HOSTS = HostJurisdictions(_VERTEX)
