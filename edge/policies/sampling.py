"""Send a small random fraction of easy cases to the cloud too, so the fleet can measure
edge-versus-cloud agreement (an online accuracy estimate) in production."""

from __future__ import annotations

import random

import numpy as np

from edgecascade.edge.policies.base import EASY, Decision, EscalationPolicy

SAMPLED = Decision(True, "random agreement sample", sampled=True)


class RandomSamplePolicy(EscalationPolicy):
    def __init__(self, rate: float, seed: int | None = None) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate must be within 0..1, got {rate}")
        self.rate = rate
        self._rng = random.Random(seed)

    def decide(self, probs: np.ndarray) -> Decision:
        return SAMPLED if self.rate and self._rng.random() < self.rate else EASY
