"""Gateway refusals.

A :class:`Refusal` is the one way a request is stopped: it carries the HTTP status, a message written
for the client (what was refused and what to do), and the audit details (rule ids, record numbers,
entity types). It never carries the matched personal data: detectors report *types*, not values.
The adapter turns a refusal into the provider's error shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion.errors import GatewayError


@dataclass
class RefusalDetails:
    """What the audit log and the error body say about a refusal (no personal data)."""

    rule_ids: list[str] = field(default_factory=list)
    records: list[int] = field(default_factory=list)
    entity_types: list[str] = field(default_factory=list)


class Refusal(GatewayError):
    """The gateway refuses a request (policy block, bad input, fail-closed error).

    ``kind`` is a short machine-readable reason ("policy_block", "invalid_upload", "upload_too_large",
    "route_not_allowed", "residency", "unscanned_file", "upstream_error", "internal_error", ...) used
    as the provider error ``code`` and as the audit ``reason``.
    """

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        *,
        hint: str | None = None,
        param: str | None = None,
        rule_ids: Sequence[str] = (),
        records: Sequence[int] = (),
        entity_types: Sequence[str] = (),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.kind = kind
        self.param = param
        self.details = RefusalDetails(list(rule_ids), list(records), sorted(set(entity_types)))
        self.extra = dict(extra or {})

    @property
    def client_message(self) -> str:
        """The message sent to the client: the refusal, the rule, records and entity types, and the hint."""
        parts = [self.message]
        d = self.details
        if d.rule_ids:
            parts.append("rule(s): " + ", ".join(d.rule_ids))
        if d.records:
            shown = ", ".join(str(r) for r in d.records[:20])
            more = f" and {len(d.records) - 20} more" if len(d.records) > 20 else ""
            parts.append(f"record(s): {shown}{more}")
        if d.entity_types:
            parts.append("entity type(s): " + ", ".join(d.entity_types))
        text = "; ".join(parts)
        if self.hint:
            text += f". {self.hint}"
        return text
