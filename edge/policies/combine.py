"""Combine policies: hard if any (or all) of them say so."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgecascade.edge.policies.base import EASY, Decision, EscalationPolicy


class AnyOf(EscalationPolicy):
    def __init__(self, policies: Sequence[EscalationPolicy]) -> None:
        self.policies = list(policies)

    def decide(self, probs: np.ndarray) -> Decision:
        sampled: Decision | None = None
        for policy in self.policies:
            decision = policy.decide(probs)
            if decision.hard and not decision.sampled:
                return decision
            if decision.sampled and sampled is None:
                sampled = decision
        return sampled or EASY


class AllOf(EscalationPolicy):
    def __init__(self, policies: Sequence[EscalationPolicy]) -> None:
        self.policies = list(policies)

    def decide(self, probs: np.ndarray) -> Decision:
        reasons = []
        for policy in self.policies:
            decision = policy.decide(probs)
            if not decision.hard:
                return EASY
            reasons.append(decision.reason)
        return Decision(True, " and ".join(reasons))
