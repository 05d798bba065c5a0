"""The daemon's Prometheus metrics, fed by an AnswerObserver; one registry per daemon."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.policies import Decision
from edgecascade.shared.answer import Answer

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.answers = Counter(
            "edgecascade_answers",
            "Answers by source",
            ["source", "escalated", "degraded"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgecascade_answer_latency_seconds",
            "Cascade latency",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rejected = Counter(
            "edgecascade_rejected",
            "Requests refused (503) by front end",
            ["frontend"],
            registry=self.registry,
        )
        self.bad_requests = Counter(
            "edgecascade_bad_requests",
            "Malformed requests by front end",
            ["frontend"],
            registry=self.registry,
        )
        self.inflight = Gauge("edgecascade_inflight", "Requests in progress", registry=self.registry)
        self.model_info = Gauge(
            "edgecascade_model_info", "Serving model", ["name", "version"], registry=self.registry
        )
        self.extra = Gauge(
            "edgecascade_counter",
            "Counters of plug-ins (telemetry, lookups, camera)",
            ["name"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, bool, bool], tuple[Any, Any]] = {}

    def observe(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        # Labelled children are looked up once per label set: labels() takes a lock and
        # builds a key on every call, a few µs on each answer's path.
        key = (answer.source, answer.escalated, answer.degraded)
        children = self._children.get(key)
        if children is None:
            children = (
                self.answers.labels(
                    answer.source, str(answer.escalated).lower(), str(answer.degraded).lower()
                ),
                self.latency.labels(answer.source),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(answer.latency_ms / 1000.0)

    def render(self, counters: dict[str, float]) -> bytes:
        for name, value in counters.items():
            self.extra.labels(name).set(value)
        return generate_latest(self.registry)
