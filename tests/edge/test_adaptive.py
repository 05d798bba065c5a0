"""The adaptive escalation threshold on real data: the int8 edge model over held-out digits that
drift (blur, noise) part-way, the real cloud model behind a real cascade."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
from edgecascade.edge.config.cascade import CascadeSection
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import AnyOf, MaxProbabilityPolicy
from edgecascade.edge.policies.adaptive import AdaptiveThresholdPolicy, find_adaptive
from edgecascade.edge.policies.from_config import build_policy
from edgecascade.shared.backends import BackendOptions
from edgecascade.tools.datasets import LABELS
from edgecascade.tools.drift_data import DriftStream, Segment, drift_stream

MODELS = Path(__file__).parents[1] / "fixtures" / "models"
WINDOW = 200


@pytest.fixture(scope="module")
def edge() -> Iterator[LocalModel]:
    model = LocalModel.load(MODELS / "digits_edge_int8.tflite", BackendOptions(warmup_runs=0))
    yield model
    model.close()


@pytest.fixture(scope="module")
def stream(digits_split: tuple) -> DriftStream:
    _, held = digits_split
    return drift_stream(held, repeats_per_segment=2)


def _decide_all(policy: object, probs: np.ndarray) -> np.ndarray:
    return np.array([policy.decide(row).hard for row in probs])  # type: ignore[attr-defined]


def _settled(stream: DriftStream, index: int) -> np.ndarray:
    mask = stream.segment == index
    mask[np.flatnonzero(mask)[:WINDOW]] = False
    return mask


def test_holds_target_in_every_segment_where_static_drifts(edge: LocalModel, stream: DriftStream) -> None:
    probs = edge.probabilities(stream.features)
    adaptive = AdaptiveThresholdPolicy(
        MaxProbabilityPolicy(0.68),
        target_rate=0.10,
        min_threshold=0.2,
        max_threshold=0.95,
        window=WINDOW,
        seed=0,
    )
    hard_adaptive = _decide_all(adaptive, probs)
    hard_static = _decide_all(MaxProbabilityPolicy(0.68), probs)
    names = [s.name for s in stream.segments]
    assert names == ["clean", "blurred", "noisy", "clean again"]
    for index in range(len(names)):
        settled = _settled(stream, index)
        assert abs(hard_adaptive[settled].mean() - 0.10) <= 0.02, names[index]
    blurred = stream.segment == 1
    assert hard_static[blurred].mean() > 0.40  # the tuned static threshold, 30+ points off target
    # The threshold really moved: down for the blurred digits, back up once they are clean.
    stats = adaptive.stats()
    assert stats["adaptive_requests"] == len(stream.labels)
    assert stats["adaptive_escalated"] == int(hard_adaptive.sum())
    assert abs(stats["adaptive_achieved_rate"] - 0.10) <= 0.02
    assert 0.6 < stats["adaptive_threshold"] < 0.8


def test_threshold_clamped_to_profile_bounds(edge: LocalModel, stream: DriftStream) -> None:
    blurred = stream.segment == 1
    probs = edge.probabilities(stream.features[blurred])
    adaptive = AdaptiveThresholdPolicy(
        MaxProbabilityPolicy(0.68), target_rate=0.10, min_threshold=0.6, max_threshold=0.7, window=WINDOW
    )
    hard = _decide_all(adaptive, probs)
    assert adaptive.threshold == 0.6  # wants ~0.35 for blurred digits; the bound wins
    assert hard[WINDOW:].mean() == pytest.approx((probs[WINDOW:].max(axis=1) < 0.6).mean())


def test_rate_cap_lowers_the_effective_target(edge: LocalModel, digits_split: tuple) -> None:
    _, held = digits_split
    probs = edge.probabilities(np.concatenate([held.features] * 4))
    now = [0.0]
    adaptive = AdaptiveThresholdPolicy(
        MaxProbabilityPolicy(0.68),
        target_rate=0.10,
        window=WINDOW,
        max_per_minute=30,
        clock=lambda: now[0],
        seed=0,
    )
    hard = np.zeros(len(probs), bool)
    for i, row in enumerate(probs):
        now[0] = i / 10.0  # 10 requests a second = 600 a minute; 30/min allows 5%
        hard[i] = adaptive.decide(row).hard
    assert adaptive.stats()["adaptive_effective_target"] == pytest.approx(0.05)
    last_minutes = hard[-1200:]
    assert abs(last_minutes.mean() - 0.05) <= 0.015
    assert last_minutes[-600:].sum() <= 30 + 6  # about the cap in the last minute


def test_cascade_escalations_match_stats_and_cloud_calls(digits_split: tuple) -> None:
    _, held = digits_split
    stream = drift_stream(held, repeats_per_segment=1, segments=(Segment("blurred", blur_sigma=0.8),))
    model = LocalModel.load(MODELS / "digits_edge_int8.tflite", BackendOptions(warmup_runs=0))
    cloud = InProcessCloudClient(MODELS / "digits_cloud.onnx")
    section = CascadeSection.model_validate(
        {"adaptive": {"enabled": True, "target_rate": 0.1, "min_threshold": 0.2, "window": 100}}
    )
    policy = build_policy(section, LABELS, seed=0)
    cascade = Cascade(ModelSlot(model), policy, cloud=cloud)
    try:
        answers = [cascade.answer(CascadeRequest(row)) for row in stream.features]
    finally:
        cascade.slot.close()
        cloud.close()
    adaptive = find_adaptive(policy)
    assert adaptive is not None
    escalated = sum(a.escalated for a in answers)
    assert escalated == cloud.calls == adaptive.stats()["adaptive_escalated"]
    assert abs(escalated / len(answers) - 0.1) <= 0.03
    assert any("(adaptive)" in a.reason for a in answers if a.escalated)


def test_profile_section_validation_and_sampling_wrap() -> None:
    section = CascadeSection.model_validate(
        {"adaptive": {"enabled": True, "target_rate": 0.05}, "sample_rate": 0.02}
    )
    policy = build_policy(section, LABELS, seed=0)
    assert isinstance(policy, AnyOf)
    found = find_adaptive(policy)
    assert found is not None and found.target_rate == 0.05 and found.window == 200
    assert find_adaptive(MaxProbabilityPolicy(0.5)) is None
    with pytest.raises(ValidationError, match="exactly one policy"):
        CascadeSection.model_validate(
            {
                "adaptive": {"enabled": True},
                "policies": [{"kind": "max_prob", "threshold": 0.7}, {"kind": "margin", "threshold": 0.2}],
            }
        )
    with pytest.raises(ValidationError, match="above max_threshold"):
        CascadeSection.model_validate({"adaptive": {"min_threshold": 0.9, "max_threshold": 0.5}})
    with pytest.raises(ValidationError, match="extra"):
        CascadeSection.model_validate({"adaptive": {"targt_rate": 0.1}})


def test_entropy_kind_uses_its_own_direction(edge: LocalModel, digits_split: tuple) -> None:
    from edgecascade.edge.policies import EntropyPolicy

    _, held = digits_split
    probs = edge.probabilities(np.concatenate([held.features] * 2))
    adaptive = AdaptiveThresholdPolicy(EntropyPolicy(0.3), target_rate=0.2, window=WINDOW, seed=0)
    hard = _decide_all(adaptive, probs)
    assert abs(hard[WINDOW:].mean() - 0.2) <= 0.03
    reason = next(adaptive.decide(row).reason for row in probs if adaptive.decide(row).hard)
    assert reason.startswith("entropy ") and " > " in reason
