"""Exponential backoff between reopen attempts of a source that dropped out."""

from __future__ import annotations


class Backoff:
    """`next_delay()` gives min, 2*min, 4*min, ... capped at max; `reset()` after a success."""

    def __init__(self, min_s: float, max_s: float) -> None:
        if min_s <= 0 or max_s < min_s:
            raise ValueError(f"need 0 < min_s <= max_s, got {min_s}, {max_s}")
        self.min_s = min_s
        self.max_s = max_s
        self.attempts = 0

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one attempt."""
        delay = min(self.max_s, self.min_s * 2.0 ** min(self.attempts, 62))
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
