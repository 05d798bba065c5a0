"""The daemon's Prometheus metrics, fed by an AnswerObserver; one store per daemon.

Prometheus conventions: counters end in `_total`, units are in the names (`_seconds`,
`_bytes`), the standard `process_*` metrics are those of prometheus_client's process
collector, and `edgecascade_model_info` is read from the model slot at every scrape, so it
names the model serving right now, after any swap or rollback. Answers and their latency carry
the model's name and version as labels. The parts' counters (lookups, deferred escalation,
camera, ...) arrive as one flat dict; PART_GAUGES lists the ones that are levels, not
running totals, every other value is exposed as a counter.

The few metric types the daemon needs are kept here and rendered in the text exposition
format (version 0.0.4) at scrape time, instead of importing prometheus_client: that library
loads 71 modules (its HTTP servers, WSGI and push-gateway clients among them), about 25 ms of
CPU at every start of the daemon, for what is a dict of numbers until someone scrapes."""

from __future__ import annotations

import bisect
import math
import os
import re
import resource
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

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
    "camera_events_ends_pending": (
        "edgecascade_camera_events_ends_pending",
        "Ends of tracked objects not yet delivered, sent when the broker is back",
    ),
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


def _value(v: float) -> str:
    """A sample value as Prometheus (and prometheus_client) writes it."""
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    if math.isnan(v):
        return "NaN"
    return repr(float(v))


def _label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = sorted(zip(names, values, strict=True))  # in name order, as prometheus_client writes them
    return "{" + ",".join(f'{n}="{_label_value(v)}"' for n, v in pairs) + "}"


def _header(name: str, help_text: str, kind: str) -> list[str]:
    help_text = help_text.replace("\\", "\\\\").replace("\n", "\\n")
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


class _CounterChild:
    __slots__ = ("_lock", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        with self._lock:
            self.value += amount


class _HistogramChild:
    __slots__ = ("_bounds", "_lock", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._lock = threading.Lock()
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self._bounds, value)  # le: a value equal to a bound is in it
        with self._lock:
            self.counts[i] += 1
            self.sum += value


class _Family:
    """One labelled metric: children by label values, created on first use."""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str]) -> None:
        self.name, self.help, self.labelnames = name, help_text, tuple(labelnames)
        self._children: dict[tuple[str, ...], Any] = {}
        self._lock = threading.Lock()

    def _new(self) -> Any:
        raise NotImplementedError

    def labels(self, *values: str) -> Any:
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        child = self._children.get(values)
        if child is None:
            with self._lock:
                child = self._children.setdefault(values, self._new())
        return child

    def _items(self) -> list[tuple[tuple[str, ...], Any]]:
        with self._lock:
            return list(self._children.items())


class Counter(_Family):
    def _new(self) -> _CounterChild:
        return _CounterChild()

    def lines(self) -> list[str]:
        total = f"{self.name}_total"
        out = _header(total, self.help, "counter")
        for values, child in self._items():
            out.append(f"{total}{_labels(self.labelnames, values)} {_value(child.value)}")
        return out


class Histogram(_Family):
    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str], buckets: Sequence[float]
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.bounds = tuple(float(b) for b in buckets)

    def _new(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def lines(self) -> list[str]:
        out = _header(self.name, self.help, "histogram")
        names = (*self.labelnames, "le")
        for values, child in self._items():
            with child._lock:
                counts, total = list(child.counts), child.sum
            running = 0
            for bound, count in zip((*self.bounds, math.inf), counts, strict=True):
                running += count
                out.append(f"{self.name}_bucket{_labels(names, (*values, _value(bound)))} {_value(running)}")
            plain = _labels(self.labelnames, values)
            out.append(f"{self.name}_count{plain} {_value(running)}")
            out.append(f"{self.name}_sum{plain} {_value(total)}")
        return out


class Gauge:
    """A level read from a function at scrape time."""

    def __init__(self, name: str, help_text: str) -> None:
        self.name, self.help = name, help_text
        self._read: Callable[[], float] = lambda: 0.0

    def set_function(self, read: Callable[[], float]) -> None:
        self._read = read

    def lines(self) -> list[str]:
        return [*_header(self.name, self.help, "gauge"), f"{self.name} {_value(float(self._read()))}"]


def _process_lines() -> list[str]:
    """prometheus_client's process collector, from /proc (nothing where there is none)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/stat", "rb") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith(b"btime"))
        open_fds = len(os.listdir("/proc/self/fd"))
    except (OSError, StopIteration, IndexError, ValueError):
        return []
    ticks, page = os.sysconf("SC_CLK_TCK"), resource.getpagesize()
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    gauges = [
        ("process_virtual_memory_bytes", "Virtual memory size in bytes.", float(fields[20])),
        ("process_resident_memory_bytes", "Resident memory size in bytes.", float(fields[21]) * page),
        (
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            float(fields[19]) / ticks + boot,
        ),
    ]
    out = []
    for name, help_text, value in gauges:
        out += [*_header(name, help_text, "gauge"), f"{name} {_value(value)}"]
    cpu = (float(fields[11]) + float(fields[12])) / ticks
    out += [
        *_header("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter"),
        f"process_cpu_seconds_total {_value(cpu)}",
        *_header("process_open_fds", "Number of open file descriptors.", "gauge"),
        f"process_open_fds {_value(open_fds)}",
        *_header("process_max_fds", "Maximum number of open file descriptors.", "gauge"),
        f"process_max_fds {_value(soft if soft != resource.RLIM_INFINITY else math.inf)}",
    ]
    return out


def _model_info_lines(models: Iterable[LocalModel]) -> list[str]:
    """`edgecascade_model_info{name,version,backend,accelerator} 1` for each model serving at
    scrape time; `accelerator` is the execution provider or delegate that loaded (cpu: none)."""
    names = ("name", "version", "backend", "accelerator")
    out = _header("edgecascade_model_info", "The model serving now", "gauge")
    for model in models:
        card = model.card
        values = (card.name, card.version, card.backend, model.backend.accelerator)
        out.append(f"edgecascade_model_info{_labels(names, values)} 1.0")
    return out


def _part_lines(values: dict[str, float]) -> Iterator[str]:
    """The flat counters of the daemon's parts, as counters and gauges."""
    for name, value in sorted(values.items()):
        if name in PART_SKIPPED:
            continue
        gauge = PART_GAUGES.get(name)
        if gauge is not None:
            yield from _header(gauge[0], gauge[1], "gauge")
            yield f"{gauge[0]} {_value(float(value))}"
        else:
            total = part_metric_name(name) + "_total"
            yield from _header(total, f"Count of {name} (agent part)", "counter")
            yield f"{total} {_value(float(value))}"


class AgentMetrics:
    def __init__(self) -> None:
        # No `<counter>_created` series: scrapers see restarts through process_start_time_seconds.
        self.answers = Counter(
            "edgecascade_answers",
            "Answers by model, source and outcome",
            ["model", "model_version", "source", "escalated", "degraded"],
        )
        self.latency = Histogram(
            "edgecascade_answer_latency_seconds",
            "Cascade latency, request in to answer out",
            ["model", "model_version", "source"],
            buckets=LATENCY_BUCKETS,
        )
        self.rejected = Counter("edgecascade_rejected", "Requests refused (503) by front end", ["frontend"])
        self.bad_requests = Counter(
            "edgecascade_bad_requests", "Malformed requests by front end", ["frontend"]
        )
        self.inflight = Gauge("edgecascade_inflight_requests", "Requests in progress")
        self._current: Callable[[], Iterable[LocalModel]] = lambda: ()
        self._children: dict[tuple[str, bool, bool, str, str], tuple[Any, Any]] = {}

    def track_models(self, current: Callable[[], Iterable[LocalModel]]) -> None:
        """Report `current()` (the models in the slots now) as edgecascade_model_info at every scrape."""
        self._current = current

    def observe(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        # Labelled children are looked up once per label set, not built per answer.
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
        lines = _process_lines()
        for family in (self.answers, self.latency, self.rejected, self.bad_requests, self.inflight):
            lines += family.lines()
        lines += _model_info_lines(self._current())
        lines += _part_lines(counters)
        return ("\n".join(lines) + "\n").encode()
