from __future__ import annotations

import pytest

from edgecascade.edge.cloud_client.breaker import CircuitBreaker
from edgecascade.shared.errors import CircuitOpenError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_then_probes_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=10, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    breaker.before_call()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state == "open" and breaker.opened_count == 1
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.now = 10.0
    assert breaker.state == "half_open"
    breaker.before_call()  # the one probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # no second probe while the first is out
    breaker.record_failure()  # probe failed: open again for another reset period
    assert breaker.state == "open"
    clock.now = 15.0
    with pytest.raises(CircuitOpenError):
        breaker.before_call()
    clock.now = 20.0
    breaker.before_call()
    breaker.record_success()
    assert breaker.state == "closed"
    breaker.before_call()
