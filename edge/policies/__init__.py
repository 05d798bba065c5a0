"""Escalation policies: decide from the local model's probabilities whether a case is hard."""

from edgecascade.edge.policies.base import Decision, EscalationPolicy
from edgecascade.edge.policies.combine import AllOf, AnyOf
from edgecascade.edge.policies.confidence import EntropyPolicy, MarginPolicy, MaxProbabilityPolicy
from edgecascade.edge.policies.sampling import RandomSamplePolicy

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
