"""Prometheus metrics of the cloud API. With several workers, prometheus-client's
multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the server before workers start)
aggregates every worker's values at /metrics."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class CloudMetrics:
    """The metrics one server process records; `render()` gives the text exposition."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "edgecascade_cloud_requests", "HTTP requests handled", ["endpoint"], registry=self.registry
        )
        self.errors = Counter(
            "edgecascade_cloud_errors",
            "Requests answered with an error status",
            ["status"],
            registry=self.registry,
        )
        self.inferences = Counter(
            "edgecascade_cloud_inferences",
            "Infer requests computed by a model",
            ["model"],
            registry=self.registry,
        )
        self.replays = Counter(
            "edgecascade_cloud_idempotent_replays",
            "Infer requests answered from the idempotency cache",
            ["model"],
            registry=self.registry,
        )
        self.raw_inputs = Counter(
            "edgecascade_cloud_raw_inputs",
            "Infer requests that carried the device's raw input (parameter raw_input_b64)",
            ["model"],
            registry=self.registry,
        )
        self.raw_input_bytes = Counter(
            "edgecascade_cloud_raw_input_bytes",
            "Decoded bytes of raw inputs received",
            ["model"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "edgecascade_cloud_batch_size",
            "Requests merged into one model call",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgecascade_cloud_infer_latency_seconds",
            "Infer request latency, decode to encode",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_batch(self, model: str, size: int) -> None:
        self.batch_size.labels(model).observe(size)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
