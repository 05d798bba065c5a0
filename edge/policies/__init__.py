"""Escalation policies: decide from the local model's probabilities whether a case is hard."""

from edge.policies.base import Decision, EscalationPolicy
from edge.policies.combine import AllOf, AnyOf
from edge.policies.confidence import EntropyPolicy, MarginPolicy, MaxProbabilityPolicy
from edge.policies.sampling import RandomSamplePolicy

__all__ = [
    "AllOf",
    "AnyOf",
    "Decision",
    "EntropyPolicy",
    "EscalationPolicy",
    "MarginPolicy",
    "MaxProbabilityPolicy",
    "RandomSamplePolicy",
]
