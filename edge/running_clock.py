"""The age of what the device keeps, on a clock that a wall-clock step cannot move.

A Raspberry Pi has no real-time clock: it boots at the time fake-hwclock saved at the last
shutdown (or at 1970 without it) and jumps when NTP syncs, by however long it was off. A
record made before the sync then looks weeks old by the wall clock, and an age limit on wall
time would evict it minutes after it was made, before it could ever be sent.

A RunningClock counts `time.monotonic()` while the process runs and, after a restart, goes on
from the reading its owner stored at its last commit: ages are time the agent ran, so a clock
step moves nothing and time powered off (when nothing could be sent) does not count either."""

from __future__ import annotations

import time
from collections.abc import Callable


class RunningClock:
    """Seconds of running time, continuing from `start` (the last reading stored)."""

    def __init__(self, start: float = 0.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._offset = max(0.0, start) - monotonic()

    def __call__(self) -> float:
        return self._offset + self._monotonic()
