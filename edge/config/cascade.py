"""[cascade]: when to escalate and how much (the cloud itself is [cloud], edge/config/cloud.py)."""

from typing import Literal, Self

from pydantic import Field, model_validator

from edgecascade.edge.config.base import Section
from edgecascade.shared.policy_kinds import POLICY_KINDS, PolicyKind


class PolicySpec(Section):
    kind: PolicyKind = Field(
        description="; ".join(f"{kind}: {meaning}" for kind, meaning in POLICY_KINDS.items()) + "."
    )
    threshold: float = Field(ge=0.0, le=1.0, description="The policy's threshold, 0..1.")
    per_class: dict[str, float] = Field(
        default_factory=dict, description='max_prob only: threshold per predicted label, e.g. {"8" = 0.9}.'
    )


class AdaptiveSection(Section):
    """[cascade.adaptive]: hold the escalation rate at a target as the input distribution drifts."""

    enabled: bool = Field(
        False, description="Adjust the (single) policy's threshold online to hold target_rate."
    )
    target_rate: float = Field(
        0.10, gt=0.0, lt=1.0, description="Wanted fraction of requests escalated, e.g. 0.10."
    )
    min_threshold: float = Field(
        0.2, ge=0.0, le=1.0, description="Lowest threshold the controller may set (policy units)."
    )
    max_threshold: float = Field(
        0.95, ge=0.0, le=1.0, description="Highest threshold the controller may set (policy units)."
    )
    window: int = Field(
        200, ge=20, le=100_000, description="Recent requests whose uncertainty sets the threshold."
    )
    max_cloud_per_minute: int | None = Field(
        None,
        gt=0,
        description="Cap on escalations a minute: the target is lowered while the request rate "
        "would exceed it. Unset = no cap beyond target_rate.",
    )

    @model_validator(mode="after")
    def _bounds_ordered(self) -> Self:
        if self.min_threshold > self.max_threshold:
            raise ValueError(
                f"min_threshold {self.min_threshold} is above max_threshold {self.max_threshold}"
            )
        return self


class CascadeSection(Section):
    policies: list[PolicySpec] = Field(
        default_factory=lambda: [PolicySpec(kind="max_prob", threshold=0.68)],
        description="One or more policies; see `combine`.",
    )
    combine: Literal["any", "all"] = Field("any", description="Hard if any (or all) policies say so.")
    sample_rate: float = Field(
        0.0, ge=0.0, le=0.5, description="Fraction of easy cases also sent to the cloud to measure agreement."
    )
    max_escalation_fraction: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="Budget: at most this fraction of requests escalated (sliding minute).",
    )
    max_escalations_per_minute: int | None = Field(
        None, gt=0, description="Budget: at most this many a minute."
    )
    adaptive: AdaptiveSection = Field(
        default_factory=AdaptiveSection,
        description="Online threshold control; needs exactly one policy (max_prob, margin or entropy).",
    )

    @model_validator(mode="after")
    def _per_class_only_for_max_prob(self) -> Self:
        for spec in self.policies:
            if spec.per_class and spec.kind != "max_prob":
                raise ValueError(f"per_class thresholds apply to max_prob policies, not {spec.kind}")
        if self.adaptive.enabled and len(self.policies) != 1:
            raise ValueError(f"adaptive.enabled needs exactly one policy, got {len(self.policies)}")
        if self.adaptive.enabled and self.policies[0].per_class:
            raise ValueError("adaptive.enabled sets one threshold; remove per_class")
        return self
