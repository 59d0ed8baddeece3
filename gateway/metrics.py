"""Prometheus metrics served on ``/metrics`` (one registry per gateway app)."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics"]


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "bastion_gateway_requests",
            "Requests handled, by upstream, route and decision (allow, redact, block, error).",
            ["upstream", "route", "decision"],
            registry=self.registry,
        )
        self.bytes_scanned = Counter(
            "bastion_gateway_bytes_scanned",
            "Upload bytes (decoded) run through the policy scanner.",
            ["upstream", "route"],
            registry=self.registry,
        )
        self.records_scanned = Counter(
            "bastion_gateway_records_scanned",
            "Training records run through the policy scanner.",
            ["upstream", "route"],
            registry=self.registry,
        )
        self.upstream_latency = Histogram(
            "bastion_gateway_upstream_latency_seconds",
            "Time from sending a request upstream to receiving its response headers.",
            ["upstream", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "bastion_gateway_audit_failures", "Audit log appends that failed.", registry=self.registry
        )

    def render(self) -> bytes:
        """The exposition text; under ``bastion gateway --workers N`` (Prometheus multiprocess mode,
        ``PROMETHEUS_MULTIPROC_DIR`` set) the sum over all workers of the replica."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client.multiprocess import MultiProcessCollector

            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)
