"""A circuit breaker: after repeated failures stop calling the cloud for a while, then let one
probe through (half-open); a success closes it again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

from edgecascade.shared.errors import CircuitOpenError

log = logging.getLogger(__name__)

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    def __init__(
        self, failures: int = 5, reset_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.failures_to_open = failures
        self.reset_s = reset_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._probe_in_flight = False
        self.opened_count = 0

    @property
    def state(self) -> State:
        with self._lock:
            if self._state == "open" and self._clock() - self._opened_at >= self.reset_s:
                return "half_open"
            return self._state

    def before_call(self) -> None:
        """Raise CircuitOpenError if no call should be made now; otherwise allow one."""
        with self._lock:
            if self._state == "closed":
                return
            if self._state == "open" and self._clock() - self._opened_at >= self.reset_s:
                self._state = "half_open"
            if self._state == "half_open" and not self._probe_in_flight:
                self._probe_in_flight = True  # exactly one probe at a time
                return
            raise CircuitOpenError(f"cloud circuit breaker open after {self.failures_to_open} failures")

    def record_success(self) -> None:
        with self._lock:
            if self._state != "closed":
                log.info("cloud reachable again; circuit breaker closed")
            self._state = "closed"
            self._consecutive = 0
            self._probe_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            self._probe_in_flight = False
            if self._state == "half_open" or (
                self._state == "closed" and self._consecutive >= self.failures_to_open
            ):
                if self._state == "closed":
                    log.warning(
                        "cloud failed %d times in a row; circuit breaker open for %.0fs",
                        self._consecutive,
                        self.reset_s,
                    )
                    self.opened_count += 1
                self._state = "open"
                self._opened_at = self._clock()
