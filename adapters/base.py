"""The provider adapter interface.

An adapter knows one provider's API: which routes carry training data (and how their records are
framed), which routes are plain pass-through (allowed or denied by the gateway's route list), and
the provider's error shape. The gateway core (routing, proxying, scanning, audit) is shared.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bastion.gateway.errors import Refusal

if TYPE_CHECKING:
    from starlette.responses import Response

    from bastion.gateway.app import Exchange, Gateway

RouteKind = Literal["passthrough", "training"]


@dataclass(frozen=True)
class Route:
    """A recognised route: a stable name used in allow lists, audit entries and metrics."""

    name: str
    kind: RouteKind
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RouteSpec:
    method: str
    pattern: str  # e.g. "/v1/uploads/{upload_id}/parts"
    name: str
    kind: RouteKind = "passthrough"

    def compile(self) -> re.Pattern[str]:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[A-Za-z0-9_.:-]+)", self.pattern)
        return re.compile(f"^{regex}/?$")


class RouteTable:
    def __init__(self, specs: list[RouteSpec]) -> None:
        self.specs = specs
        self._compiled = [(s, s.compile()) for s in specs]

    def match(self, method: str, path: str) -> Route | None:
        for spec, rx in self._compiled:
            if spec.method != method:
                continue
            m = rx.match(path)
            if m:
                return Route(spec.name, spec.kind, m.groupdict())
        return None

    @property
    def names(self) -> set[str]:
        return {s.name for s in self.specs}


class Adapter(ABC):
    """One provider's API as seen by the gateway."""

    name: str
    routes: RouteTable
    #: pass-through routes allowed when the gateway config does not list ``allow_routes``
    default_allowed_routes: frozenset[str] = frozenset()
    #: names of the record formats this provider accepts for training (for docs and error messages)
    record_formats: tuple[str, ...] = ()

    def classify(self, method: str, path: str) -> Route | None:
        """The route for ``method path`` (path relative to the upstream, e.g. ``/v1/files``), or None."""
        return self.routes.match(method.upper(), path)

    @abstractmethod
    def error_body(self, refusal: Refusal) -> dict[str, Any]:
        """The provider-shaped JSON error body for a refusal."""

    @abstractmethod
    async def handle(self, gateway: Gateway, exchange: Exchange) -> Response:
        """Handle a training-data route: scan, decide, forward only what was admitted."""

    def check_record(self, record: Any, purpose: str) -> str | None:  # pragma: no cover - default
        """A reason why ``record`` is not a valid training record for this provider, or None."""
        return None
