from __future__ import annotations

import numpy as np
import pytest

from edgecascade.edge.config.cascade import CascadeSection, PolicySpec
from edgecascade.edge.escalation_budget import EscalationBudget
from edgecascade.edge.policies import (
    AllOf,
    AnyOf,
    EntropyPolicy,
    MarginPolicy,
    MaxProbabilityPolicy,
    RandomSamplePolicy,
)
from edgecascade.edge.policies.from_config import build_policy
from edgecascade.shared.errors import ConfigError

SURE = np.array([0.97, 0.01, 0.01, 0.01])
SPLIT = np.array([0.48, 0.46, 0.03, 0.03])
FLAT = np.array([0.7, 0.1, 0.1, 0.1])


def test_single_signal_policies() -> None:
    assert not MaxProbabilityPolicy(0.8).decide(SURE).hard
    decision = MaxProbabilityPolicy(0.8).decide(SPLIT)
    assert decision.hard and decision.reason == "max_prob 0.480 < 0.800"
    assert MarginPolicy(0.3).decide(SPLIT).hard and not MarginPolicy(0.3).decide(FLAT).hard
    assert EntropyPolicy(0.5).decide(FLAT).hard is True and not EntropyPolicy(0.5).decide(SURE).hard
    batch = np.stack([SURE, SPLIT])
    for policy in (MaxProbabilityPolicy(0.8), MarginPolicy(0.3), EntropyPolicy(0.5)):
        scores = policy.scores(batch)
        assert scores[1] > scores[0]  # the split case is the more uncertain one


def test_per_class_thresholds() -> None:
    strict_on_zero = MaxProbabilityPolicy(0.5, per_class={0: 0.99})
    assert strict_on_zero.decide(SURE).hard  # class 0 needs 0.99
    assert not MaxProbabilityPolicy(0.5, per_class={1: 0.99}).decide(SURE).hard


def test_combinators() -> None:
    both = [MaxProbabilityPolicy(0.8), MarginPolicy(0.3)]
    assert AnyOf(both).decide(FLAT).hard  # max_prob trips, margin does not
    assert not AllOf(both).decide(FLAT).hard
    assert AllOf(both).decide(SPLIT).reason == "max_prob 0.480 < 0.800 and margin 0.020 < 0.300"


def test_random_sample_fraction() -> None:
    policy = RandomSamplePolicy(0.1, seed=3)
    decisions = [policy.decide(SURE) for _ in range(10_000)]
    sampled = sum(d.sampled for d in decisions)
    assert 850 < sampled < 1150 and all(d.hard == d.sampled for d in decisions)
    with pytest.raises(ValueError):
        RandomSamplePolicy(1.5)


def test_policy_from_profile_section() -> None:
    section = CascadeSection(
        policies=[
            PolicySpec(kind="max_prob", threshold=0.6, per_class={"1": 0.99}),
            PolicySpec(kind="margin", threshold=0.1),
        ],
        sample_rate=0.0,
    )
    policy = build_policy(section, labels=["0", "1", "2", "3"])
    assert isinstance(policy, AnyOf)
    assert policy.decide(np.array([0.02, 0.95, 0.02, 0.01])).hard  # label "1" is strict
    with pytest.raises(ConfigError, match="unknown label '7'"):
        build_policy(
            CascadeSection(policies=[PolicySpec(kind="max_prob", threshold=0.5, per_class={"7": 0.9})]), ["0"]
        )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_caps_fraction_and_rate() -> None:
    clock = FakeClock()
    budget = EscalationBudget(max_fraction=0.1, clock=clock)
    allowed = 0
    for _ in range(200):
        budget.record_request()
        if budget.try_spend() is None:
            allowed += 1
    assert allowed == 21  # 10% of 200, plus the burst of one
    assert budget.denied == 179

    rate = EscalationBudget(max_fraction=1.0, max_per_minute=5, clock=clock)
    results = []
    for _ in range(8):
        rate.record_request()
        results.append(rate.try_spend())
    assert results[:5] == [None] * 5 and results[5] == "over escalation rate (5/min)"
    clock.now += 61  # a minute later the window has moved on
    rate.record_request()
    assert rate.try_spend() is None
