"""Cap cloud cost: at most a fraction of requests, and at most N escalations a minute."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class EscalationBudget:
    """Counts requests and escalations in one-second buckets over a sliding window.

    `record_request()` is called for every request; `try_spend()` for a hard case, and says
    whether the budget allows one more escalation now. The first hard case is always
    allowed (a burst of one), so a fresh agent is not stuck at 0/0."""

    def __init__(
        self,
        max_fraction: float = 1.0,
        max_per_minute: int | None = None,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_fraction = max_fraction
        self.max_per_minute = max_per_minute
        self.window_s = window_s
        self._clock = clock
        self._buckets: deque[list[int]] = deque()  # [second, requests, escalations]
        self._lock = threading.Lock()
        self.denied = 0

    def _bucket(self) -> list[int]:
        now = int(self._clock())
        while self._buckets and self._buckets[0][0] <= now - self.window_s:
            self._buckets.popleft()
        if not self._buckets or self._buckets[-1][0] != now:
            self._buckets.append([now, 0, 0])
        return self._buckets[-1]

    def record_request(self) -> None:
        with self._lock:
            self._bucket()[1] += 1

    def _totals(self, since: float) -> tuple[int, int]:
        reqs = escs = 0
        for second, r, e in self._buckets:
            if second > since:
                reqs += r
                escs += e
        return reqs, escs

    def try_spend(self) -> str | None:
        """Reserve one escalation. Returns None if allowed, else the reason it is not."""
        with self._lock:
            bucket = self._bucket()
            now = self._clock()
            requests, escalations = self._totals(now - self.window_s)
            if escalations + 1 > self.max_fraction * requests + 1:
                self.denied += 1
                return f"over escalation budget ({escalations}/{requests} > {self.max_fraction:.0%})"
            if self.max_per_minute is not None:
                _, last_minute = self._totals(now - 60.0)
                if last_minute >= self.max_per_minute:
                    self.denied += 1
                    return f"over escalation rate ({self.max_per_minute}/min)"
            bucket[2] += 1
            return None
