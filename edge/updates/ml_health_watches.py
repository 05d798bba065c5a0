"""ML-aware health after a swap: the new model's behaviour against the previous model's.

Each watch keeps a rolling window of one per-answer signal per model version, fed by the
cascade (HealthMonitor.observe). While the old model serves, its window is the baseline;
`begin(manifest)` freezes that figure, and `verdict()` compares the new version's figure with
it using the manifest's `health` limits. Signals: escalation rate, mean confidence of the
answers the edge model served, median edge latency, and edge-versus-cloud disagreement on the
random-sample escalations (easy cases sent to the cloud anyway)."""

from __future__ import annotations

import abc
import logging
import statistics
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence

from edgecascade.edge.answer import Answer, ModelRef
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.policies import Decision
from edgecascade.shared.manifest import HealthFigure, HealthLimits, Manifest

log = logging.getLogger(__name__)

#: Versions whose windows are kept (the serving one, the previous one, one more for rollbacks).
KEEP_VERSIONS = 3


class SignalWatch(abc.ABC):
    """One signal's per-version windows. Subclasses say what one answer contributes, how the
    window aggregates, and when the change is past its limit."""

    key: str  # figure name in the device status
    label: str  # words in the rollback reason

    def __init__(self, window: int = 500) -> None:
        self.window = window
        self._lock = threading.Lock()
        self._windows: OrderedDict[str, deque[float]] = OrderedDict()
        self._version: str | None = None
        self._limits: HealthLimits | None = None
        self._before: float | None = None

    @abc.abstractmethod
    def sample(self, answer: Answer, decision: Decision | None) -> float | None:
        """This answer's value of the signal, or None when it says nothing about it."""

    def sample_run(self, latency_ms: float, error: BaseException | None) -> float | None:
        """This model call's value of the signal (models without answers: detection, tensor)."""
        return None

    @abc.abstractmethod
    def exceeded(self, before: float, after: float, limits: HealthLimits) -> str | None:
        """The limit in words if `after` is past it, else None (also when no limit is set)."""

    def aggregate(self, values: Sequence[float]) -> float:
        return statistics.fmean(values)

    def needed(self, limits: HealthLimits) -> int:
        return limits.min_requests

    def fmt(self, value: float) -> str:
        return f"{value:.2f}"

    # -- HealthWatch --------------------------------------------------------------------------
    def begin(self, manifest: Manifest | None) -> None:
        with self._lock:
            new = manifest.version if manifest else None
            previous = next((v for v in reversed(self._windows) if v != new), None)
            self._version = new
            self._limits = manifest.health if manifest else None
            self._windows.pop(new or "", None)  # the new model starts from nothing
            base = self._windows.get(previous or "")
            need = self.needed(self._limits) if self._limits else 1
            self._before = self.aggregate(list(base)) if base and len(base) >= need else None
        log.info("%s baseline of %s: %s", self.label, previous, self._before)

    def observe(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        if answer.edge_model is None:
            return
        value = self.sample(answer, decision)
        if value is not None:
            self._add(answer.edge_model.version, value)

    def observe_run(self, model: ModelRef, latency_ms: float, error: BaseException | None) -> None:
        value = self.sample_run(latency_ms, error)
        if value is not None:
            self._add(model.version, value)

    def _add(self, version: str, value: float) -> None:
        with self._lock:
            values = self._windows.get(version)
            if values is None:
                values = self._windows[version] = deque(maxlen=self.window)
                while len(self._windows) > KEEP_VERSIONS:
                    self._windows.popitem(last=False)
            else:
                self._windows.move_to_end(version)
            values.append(value)

    def record_error(self, error: BaseException) -> None:
        """Failed requests are ErrorRateWatch's signal, not this one's."""
        return None

    def _after(self) -> tuple[float | None, int]:
        values = self._windows.get(self._version or "")
        if not values:
            return None, 0
        return self.aggregate(list(values)), len(values)

    def verdict(self) -> str | None:
        with self._lock:
            limits, before = self._limits, self._before
            if limits is None or before is None:
                return None
            after, n = self._after()
        if after is None or n < self.needed(limits):
            return None
        limit = self.exceeded(before, after, limits)
        if limit is None:
            return None
        return f"{self.label} {self.fmt(after)} vs {self.fmt(before)} before (limit {limit})"

    def figure(self) -> HealthFigure | None:
        """Before and after figures of the last swap (None before any swap was watched)."""
        with self._lock:
            if self._version is None:
                return None
            after, n = self._after()
            return HealthFigure(
                before=None if self._before is None else round(self._before, 4),
                after=None if after is None else round(after, 4),
                samples=n,
            )


class EscalationRateWatch(SignalWatch):
    """Share of model-path requests the policy called hard (random samples excluded)."""

    key, label = "escalation_rate", "escalation rate"

    def sample(self, answer: Answer, decision: Decision | None) -> float | None:
        if decision is None:  # answered by a lookup table: the model did not run
            return None
        return 1.0 if decision.hard and not decision.sampled else 0.0

    def exceeded(self, before: float, after: float, limits: HealthLimits) -> str | None:
        limit = limits.max_escalation_rate_increase
        return None if limit is None or after - before <= limit else f"+{limit:.2f}"


class ConfidenceWatch(SignalWatch):
    """Mean top probability of the answers the edge model served itself (escalated answers
    carry the cloud's confidence, so they are left out)."""

    key, label = "confidence", "mean confidence"

    def sample(self, answer: Answer, decision: Decision | None) -> float | None:
        return answer.confidence if answer.source == "edge" else None

    def exceeded(self, before: float, after: float, limits: HealthLimits) -> str | None:
        limit = limits.max_confidence_drop
        return None if limit is None or before - after <= limit else f"-{limit:.2f}"


class LatencyWatch(SignalWatch):
    """Median latency of answers the edge model served without asking the cloud."""

    key, label = "latency_ms", "median latency"

    def sample(self, answer: Answer, decision: Decision | None) -> float | None:
        return answer.latency_ms if answer.source == "edge" and not answer.escalated else None

    def aggregate(self, values: Sequence[float]) -> float:
        return statistics.median(values)

    def fmt(self, value: float) -> str:
        return f"{value:.3f} ms"

    def exceeded(self, before: float, after: float, limits: HealthLimits) -> str | None:
        limit = limits.max_latency_ratio
        return None if limit is None or after <= before * limit else f"x{limit:g}"


class RunLatencyWatch(LatencyWatch):
    """Median time of the model's successful calls: the latency signal of models whose task
    gives no classification answers (detection, tensor)."""

    def sample(self, answer: Answer, decision: Decision | None) -> float | None:
        return None

    def sample_run(self, latency_ms: float, error: BaseException | None) -> float | None:
        return latency_ms if error is None else None


class DisagreementWatch(SignalWatch):
    """Share of random-sample escalations where the cloud's label differs from the edge's:
    an online estimate of the edge model's error on the cases it thinks easy."""

    key, label = "disagreement", "edge/cloud disagreement"

    def sample(self, answer: Answer, decision: Decision | None) -> float | None:
        if not answer.sampled or answer.source != "cloud" or answer.edge_label is None:
            return None
        return 1.0 if answer.edge_label != answer.label else 0.0

    def needed(self, limits: HealthLimits) -> int:
        return limits.min_samples

    def exceeded(self, before: float, after: float, limits: HealthLimits) -> str | None:
        limit = limits.max_disagreement_increase
        return None if limit is None or after - before <= limit else f"+{limit:.2f}"


def ml_watches(task: str = "classification", window: int = 500) -> list[SignalWatch]:
    """The ML-aware watches for a model of `task`, in the order their verdicts are asked: all
    four for a classifier; for other tasks, which give no labels or confidences, the latency
    of the model's calls."""
    if task != "classification":
        return [RunLatencyWatch(window)]
    return [
        EscalationRateWatch(window),
        ConfidenceWatch(window),
        LatencyWatch(window),
        DisagreementWatch(window),
    ]
