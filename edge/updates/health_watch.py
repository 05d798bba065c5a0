"""Health watching after a swap: pluggable signals that can ask for an automatic rollback.

A HealthWatch is fed every answer (as an edge.cascade AnswerObserver, via `HealthMonitor.observe`)
and every failed request (`record_error`, called by the front end that caught it). The updater
opens a window after each swap and asks `verdict()` until the window closes. ML-aware signals
(escalation rate, confidence, latency, edge/cloud disagreement) are further implementations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Protocol

from edgecascade.edge.answer import Answer
from edgecascade.edge.cascade import CascadeRequest
from edgecascade.edge.policies import Decision
from edgecascade.shared.manifest import HealthFigure, Manifest

log = logging.getLogger(__name__)


class HealthWatch(Protocol):
    def begin(self, manifest: Manifest | None) -> None:
        """A new watch window starts (after a swap to `manifest`'s model); reset counters."""

    def observe(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        """One answer served. Must be fast and must not raise."""

    def record_error(self, error: BaseException) -> None:
        """One request failed in the model path."""

    def verdict(self) -> str | None:
        """A reason to roll back now, or None while healthy (or not enough evidence yet)."""


class ErrorRateWatch:
    """Rolls back when failed / (answered + failed) exceeds `max_rate` after `min_requests`."""

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
        with self._lock:
            self.answered += 1

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
    """Fans answers and errors out to several watches; `observe` is the cascade observer."""

    def __init__(self, watches: Sequence[HealthWatch]) -> None:
        self.watches = list(watches)

    def begin(self, manifest: Manifest | None) -> None:
        for watch in self.watches:
            watch.begin(manifest)

    def observe(self, request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
        for watch in self.watches:
            watch.observe(request, answer, decision)

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
