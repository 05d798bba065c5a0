"""Build the escalation policy a profile's [cascade] section describes."""

from __future__ import annotations

from collections.abc import Sequence

from edgecascade.edge.config.cascade import CascadeSection, PolicySpec
from edgecascade.edge.policies.base import EscalationPolicy
from edgecascade.edge.policies.combine import AllOf, AnyOf
from edgecascade.edge.policies.confidence import EntropyPolicy, MarginPolicy, MaxProbabilityPolicy
from edgecascade.edge.policies.registry import policy_class
from edgecascade.edge.policies.sampling import RandomSamplePolicy
from edgecascade.shared.errors import ConfigError


def _one(spec: PolicySpec, labels: Sequence[str]) -> EscalationPolicy:
    try:
        cls = policy_class(spec.kind)
    except ValueError as exc:  # an unknown kind is an error, never a silent fallback
        raise ConfigError(str(exc), key="cascade.policies.kind") from None
    if cls is MaxProbabilityPolicy:
        per_class = {}
        for label, threshold in spec.per_class.items():
            if label not in labels:
                raise ConfigError(
                    f"unknown label {label!r}; the model's labels are {list(labels)}",
                    key="cascade.policies.per_class",
                )
            per_class[list(labels).index(label)] = threshold
        return MaxProbabilityPolicy(spec.threshold, per_class)
    return cls(spec.threshold)


def build_policy(section: CascadeSection, labels: Sequence[str], seed: int | None = None) -> EscalationPolicy:
    policies = [_one(spec, labels) for spec in section.policies]
    if section.adaptive.enabled:
        from edgecascade.edge.policies.adaptive import AdaptiveThresholdPolicy

        adaptive = section.adaptive
        assert isinstance(policies[0], MaxProbabilityPolicy | MarginPolicy | EntropyPolicy)
        policies = [
            AdaptiveThresholdPolicy(
                policies[0],
                target_rate=adaptive.target_rate,
                min_threshold=adaptive.min_threshold,
                max_threshold=adaptive.max_threshold,
                window=adaptive.window,
                max_per_minute=adaptive.max_cloud_per_minute,
                seed=seed,
            )
        ]
    policy: EscalationPolicy = (
        policies[0] if len(policies) == 1 else (AnyOf if section.combine == "any" else AllOf)(policies)
    )
    if section.sample_rate > 0:
        policy = AnyOf([policy, RandomSamplePolicy(section.sample_rate, seed)])
    return policy
