"""Health watching after a swap: pluggable signals that can ask for an automatic rollback.

Each served model has its own HealthMonitor, fed only by that model: every call of its model
(`observe_run`, from its ModelSlot, whatever the task: answered or failed, and how long it
took), every answer of a classification model (`observe`, as an edge.cascade AnswerObserver)
and failed requests a front end reports (`record_error`). The model's updater opens a window
after each swap and asks `verdict()` until the window closes. ML-aware signals (escalation
rate, confidence, latency, edge/cloud disagreement) are further implementations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from edgecascade.edge.answer import Answer, ModelRef
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.policies import Decision

if TYPE_CHECKING:
    from edgecascade.shared.manifest import HealthFigure, Manifest

log = logging.getLogger(__name__)


class HealthWatch(Protocol):
    def begin(self, manifest: Manifest | None) -> None:
        """A new watch window starts (after a swap to `manifest`'s model); reset counters."""

    def observe(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        """One classification answer served. Must be fast and must not raise."""

    def observe_run(self, model: ModelRef, latency_ms: float, error: BaseException | None) -> None:
        """One call of the model (any task) took `latency_ms`; `error` if it raised. Must be
        fast and must not raise (a ModelSlot RunObserver)."""

    def record_error(self, error: BaseException) -> None:
        """One request failed in the model path outside a model call."""

    def verdict(self) -> str | None:
        """A reason to roll back now, or None while healthy (or not enough evidence yet)."""


class ErrorRateWatch:
    """Rolls back when failed / (answered + failed) model calls exceed `max_rate` after
    `min_requests` (counted the same for every task; answers from a lookup table never ran
    the model and do not count)."""

    def __init__(self, max_rate: float, min_requests: int) -> None:
        self.max_rate = max_rate
        self.min_requests = min_requests
        self._lock = threading.Lock()
        self.answered = 0
        self.failed = 0

    def begin(self, manifest: Manifest | None) -> None:
        with self._lock:
            self.answered = self.failed = 0

    def observe(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        return None  # the model calls behind the answer are counted by observe_run

    def observe_run(self, model: ModelRef, latency_ms: float, error: BaseException | None) -> None:
        with self._lock:
            if error is None:
                self.answered += 1
            else:
                self.failed += 1

    def record_error(self, error: BaseException) -> None:
        with self._lock:
            self.failed += 1

    def verdict(self) -> str | None:
        with self._lock:
            total = self.answered + self.failed
            if total < self.min_requests:
                return None
            rate = self.failed / total
        if rate > self.max_rate:
            return f"error rate {rate:.1%} over {total} requests > {self.max_rate:.1%}"
        return None


class HealthMonitor:
    """Fans one model's answers, calls and errors out to several watches; `observe` is its
    cascade's observer, `observe_run` its slot's."""

    def __init__(self, watches: Sequence[HealthWatch]) -> None:
        self.watches = list(watches)

    def begin(self, manifest: Manifest | None) -> None:
        for watch in self.watches:
            watch.begin(manifest)

    def observe(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        for watch in self.watches:
            watch.observe(request, answer, decision)

    def observe_run(self, model: ModelRef, latency_ms: float, error: BaseException | None) -> None:
        for watch in self.watches:
            watch.observe_run(model, latency_ms, error)

    def record_error(self, error: BaseException) -> None:
        for watch in self.watches:
            watch.record_error(error)

    def verdict(self) -> str | None:
        for watch in self.watches:
            reason = watch.verdict()
            if reason:
                return reason
        return None

    def figures(self) -> dict[str, HealthFigure]:
        """Before/after figures of the watches that have them (the ML-aware ones), by signal."""
        out: dict[str, HealthFigure] = {}
        for watch in self.watches:
            figure = getattr(watch, "figure", None)
            found = figure() if callable(figure) else None
            if found is not None:
                out[watch.key] = found  # type: ignore[attr-defined]
        return out
