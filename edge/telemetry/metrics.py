"""Per-interval aggregation of every answered request into a `metrics` record.

Runs in the telemetry writer thread, never on the hot path. Counts every request, so the
cloud sees request counts, escalation and hit rates and latency percentiles even when
routine per-request records are sampled down or evicted."""

from __future__ import annotations

import bisect
import math

from edgecascade.shared.telemetry import LATENCY_BUCKETS_MS


class MetricsWindow:
    """Accumulates one interval. `add()` per request; `close()` returns the body JSON and resets."""

    def __init__(self, start: float) -> None:
        self.start = start
        self._reset()

    def _reset(self) -> None:
        self.requests = 0
        self.by_source: dict[str, int] = {}
        self.escalated = 0
        self.degraded = 0
        self.latencies: list[float] = []
        self.buckets = [0] * (len(LATENCY_BUCKETS_MS) + 1)

    def add(self, source: str, latency_ms: float, escalated: bool, degraded: bool) -> None:
        self.requests += 1
        self.by_source[source] = self.by_source.get(source, 0) + 1
        self.escalated += escalated
        self.degraded += degraded
        if not math.isfinite(latency_ms):
            return  # counted as a request; a NaN latency would make the whole record unsendable
        self.latencies.append(latency_ms)
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)] += 1

    def close(
        self,
        end: float,
        *,
        buffer_records: int,
        buffer_bytes: int,
        dropped_total: int,
        counters: dict[str, float] | None = None,
    ) -> dict[str, object]:
        """The metrics body of the interval that ends now (the caller encodes it)."""
        ordered = sorted(self.latencies)
        body = {
            "start": self.start,
            "end": end,
            "requests": self.requests,
            "by_source": self.by_source,
            "escalated": self.escalated,
            "degraded": self.degraded,
            "latency_p50_ms": _percentile(ordered, 0.50),
            "latency_p99_ms": _percentile(ordered, 0.99),
            "latency_buckets": self.buckets,
            "buffer_records": buffer_records,
            "buffer_bytes": buffer_bytes,
            "dropped_total": dropped_total,
            "counters": counters or {},
        }
        self.start = end
        self._reset()
        return body


def _percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of sorted values; None for an empty interval."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
