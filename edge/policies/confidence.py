"""Policies on one confidence signal: max probability, top-1/top-2 margin, normalized entropy."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from edgecascade.edge.policies.base import EASY, Decision, EscalationPolicy


class MaxProbabilityPolicy(EscalationPolicy):
    """Hard when the top probability is below a threshold (per predicted class if given)."""

    def __init__(self, threshold: float, per_class: Mapping[int, float] | None = None) -> None:
        self.threshold = threshold
        self.per_class = dict(per_class or {})

    def decide(self, probs: np.ndarray) -> Decision:
        top = int(probs.argmax())
        p = float(probs[top])
        limit = self.per_class.get(top, self.threshold)
        if p < limit:
            return Decision(True, f"max_prob {p:.3f} < {limit:.3f}")
        return EASY

    def scores(self, probs: np.ndarray) -> np.ndarray:
        return 1.0 - probs.max(axis=1)


class MarginPolicy(EscalationPolicy):
    """Hard when top-1 minus top-2 probability is below a threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def decide(self, probs: np.ndarray) -> Decision:
        top2 = np.partition(probs, -2)[-2:]
        margin = float(top2[1] - top2[0])
        if margin < self.threshold:
            return Decision(True, f"margin {margin:.3f} < {self.threshold:.3f}")
        return EASY

    def scores(self, probs: np.ndarray) -> np.ndarray:
        top2 = np.partition(probs, -2, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])


def normalized_entropy(probs: np.ndarray) -> np.ndarray:
    """Entropy / log(classes), in [0, 1]; works on a row or a batch."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1) / math.log(probs.shape[-1])


class EntropyPolicy(EscalationPolicy):
    """Hard when normalized entropy is above a threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def decide(self, probs: np.ndarray) -> Decision:
        h = float(normalized_entropy(probs))
        if h > self.threshold:
            return Decision(True, f"entropy {h:.3f} > {self.threshold:.3f}")
        return EASY

    def scores(self, probs: np.ndarray) -> np.ndarray:
        return normalized_entropy(probs)
