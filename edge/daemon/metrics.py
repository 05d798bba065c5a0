"""The daemon's Prometheus metrics, fed by an AnswerObserver; one registry per daemon.

Prometheus conventions: counters end in `_total`, units are in the names (`_seconds`,
`_bytes`), the standard `process_*` metrics come from prometheus_client's process collector,
and `edgecascade_model_info` is read from the model slot at every scrape, so it names the
model serving right now, after any swap or rollback. Answers and their latency carry the
model's name and version as labels. The parts' counters (lookups, deferred escalation,
camera, ...) arrive as one flat dict; PART_GAUGES lists the ones that are levels, not
running totals, every other value is exposed as a counter."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from edgecascade.edge.answer import Answer
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.policies import Decision

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

#: Part counters that are levels (they go down as well as up): name -> (metric name, help).
PART_GAUGES: dict[str, tuple[str, str]] = {
    "cache_entries": ("edgecascade_answer_cache_entries", "Cloud answers held in the answer cache"),
    "cache_bytes": ("edgecascade_answer_cache_bytes", "Size of the answer cache"),
    "deferred_queued": ("edgecascade_deferred_queued", "Hard cases waiting for a late cloud verdict"),
    "deferred_pending_publish": (
        "edgecascade_deferred_pending_publish",
        "Late verdicts waiting to be published over MQTT",
    ),
    "online_accuracy_estimate": (
        "edgecascade_online_accuracy_ratio",
        "Agreement of the local model with the cloud on sampled cases",
    ),
    "adaptive_threshold": ("edgecascade_adaptive_threshold", "Current threshold of the adaptive policy"),
    "adaptive_target_rate": ("edgecascade_adaptive_target_ratio", "Configured escalation rate target"),
    "adaptive_effective_target": (
        "edgecascade_adaptive_effective_target_ratio",
        "Escalation rate target after the budget",
    ),
    "adaptive_achieved_rate": (
        "edgecascade_adaptive_achieved_ratio",
        "Escalation rate over the adaptive window",
    ),
    "adaptive_window_fill": ("edgecascade_adaptive_window_requests", "Requests in the adaptive window"),
    "camera_queue_high_water": ("edgecascade_camera_queue_high_water", "Most frames ever queued at once"),
}
#: Part figures not exposed here: the process collector reports memory in bytes.
PART_SKIPPED = {"rss_mib"}

_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


#: Part prefixes spelled out in metric names, so that related series sort together.
_PREFIXES = {"cache_": "answer_cache_"}


def part_metric_name(name: str) -> str:
    """The Prometheus name of a part counter (without the `_total` its family adds)."""
    for short, full in _PREFIXES.items():
        if name.startswith(short):
            name = full + name[len(short) :]
    return "edgecascade_" + _NOT_NAME.sub("_", name)


class _ModelInfo:
    """`edgecascade_model_info{name,version,backend,accelerator} 1` for each model serving at
    scrape time; `accelerator` is the execution provider or delegate that loaded (cpu: none)."""

    def __init__(self) -> None:
        self.current: Callable[[], Iterable[LocalModel]] | None = None

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "edgecascade_model_info",
            "The model serving now",
            labels=["name", "version", "backend", "accelerator"],
        )
        for model in self.current() if self.current is not None else ():
            card = model.card
            family.add_metric([card.name, card.version, card.backend, model.backend.accelerator], 1.0)
        yield family


class _PartCounters:
    """The flat counters of the daemon's parts, as counters and gauges, during one render."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def collect(self) -> Iterator[Metric]:
        for name, value in sorted(self.values.items()):
            if name in PART_SKIPPED:
                continue
            gauge = PART_GAUGES.get(name)
            if gauge is not None:
                yield GaugeMetricFamily(gauge[0], gauge[1], value=float(value))
            else:
                yield CounterMetricFamily(
                    part_metric_name(name), f"Count of {name} (agent part)", value=float(value)
                )


class AgentMetrics:
    def __init__(self) -> None:
        # No `<counter>_created` series: scrapers see restarts through process_start_time_seconds.
        disable_created_metrics()
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.answers = Counter(
            "edgecascade_answers",
            "Answers by model, source and outcome",
            ["model", "model_version", "source", "escalated", "degraded"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "edgecascade_answer_latency_seconds",
            "Cascade latency, request in to answer out",
            ["model", "model_version", "source"],
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
        self.inflight = Gauge("edgecascade_inflight_requests", "Requests in progress", registry=self.registry)
        self._model_info = _ModelInfo()
        self._parts = _PartCounters()
        self.registry.register(self._model_info)
        self.registry.register(self._parts)
        self._render_lock = threading.Lock()
        self._children: dict[tuple[str, bool, bool, str, str], tuple[Any, Any]] = {}

    def track_models(self, current: Callable[[], Iterable[LocalModel]]) -> None:
        """Report `current()` (the models in the slots now) as edgecascade_model_info at every scrape."""
        self._model_info.current = current

    def observe(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        # Labelled children are looked up once per label set: labels() takes a lock and
        # builds a key on every call, a few µs on each answer's path.
        model = answer.edge_model
        name, version = (model.name, model.version) if model is not None else ("none", "none")
        key = (answer.source, answer.escalated, answer.degraded, name, version)
        children = self._children.get(key)
        if children is None:
            children = (
                self.answers.labels(
                    name,
                    version,
                    answer.source,
                    str(answer.escalated).lower(),
                    str(answer.degraded).lower(),
                ),
                self.latency.labels(name, version, answer.source),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(answer.latency_ms / 1000.0)

    def render(self, counters: dict[str, float]) -> bytes:
        """The exposition text, with the parts' `counters` as of now."""
        with self._render_lock:
            self._parts.values = counters
            try:
                return generate_latest(self.registry)
            finally:
                self._parts.values = {}
