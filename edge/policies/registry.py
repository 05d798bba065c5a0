"""Policy kind -> the class that implements it. The kinds themselves are named once, in
shared/policy_kinds.py; this registry must cover exactly those (checked at import)."""

from __future__ import annotations

from edgecascade.edge.policies.confidence import EntropyPolicy, MarginPolicy, MaxProbabilityPolicy
from edgecascade.shared.policy_kinds import POLICY_KINDS, check_policy_kind

ScorePolicyClass = type[MaxProbabilityPolicy] | type[MarginPolicy] | type[EntropyPolicy]

POLICIES: dict[str, ScorePolicyClass] = {
    "max_prob": MaxProbabilityPolicy,
    "margin": MarginPolicy,
    "entropy": EntropyPolicy,
}

if set(POLICIES) != set(POLICY_KINDS):  # a kind added in one place only is a bug, found at start
    raise ImportError(
        f"policy registry {sorted(POLICIES)} does not match POLICY_KINDS {sorted(POLICY_KINDS)}"
    )


def policy_class(kind: str) -> ScorePolicyClass:
    """The class for `kind`; ValueError naming the known kinds for anything else."""
    return POLICIES[check_policy_kind(kind)]


def kind_of(policy: object) -> str:
    """The registry name of a policy instance's class."""
    for kind, cls in POLICIES.items():
        if type(policy) is cls:
            return kind
    raise ValueError(f"{type(policy).__name__} is not a registered policy kind")
