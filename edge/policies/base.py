"""The escalation policy interface."""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class Decision:
    """`hard`: send to the cloud. `sampled`: an easy case sent anyway, to measure agreement."""

    hard: bool
    reason: str
    sampled: bool = False


EASY = Decision(False, "confident")


class EscalationPolicy(abc.ABC):
    """Called once per request with the local model's probability row (1-D, sums to ~1)."""

    @abc.abstractmethod
    def decide(self, probs: np.ndarray) -> Decision:
        """Return whether the case is hard, and a short reason such as 'max_prob 0.62 < 0.80'."""

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """Per-row uncertainty score for a batch (N, classes), higher = harder. Used by threshold
        tuning; policies without a single score (combinators, sampling) raise NotImplementedError."""
        raise NotImplementedError(type(self).__name__)
