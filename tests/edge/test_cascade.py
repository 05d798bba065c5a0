"""The cascade on real models: the int8 edge model, the SVC cloud model, real held-out digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.cloud_client import CloudAnswer, CloudClient, NullCloudClient
from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
from edgecascade.edge.escalation_budget import EscalationBudget
from edgecascade.edge.local_model import LocalModel
from edgecascade.edge.model_slot import ModelSlot
from edgecascade.edge.policies import AnyOf, MaxProbabilityPolicy, RandomSamplePolicy
from edgecascade.shared.backends import BackendOptions
from edgecascade.shared.errors import CircuitOpenError, CloudAuthError


@pytest.fixture
def slot(models_dir: Path) -> ModelSlot:
    return ModelSlot(LocalModel.load(models_dir / "digits_edge_int8.tflite", BackendOptions()))


@pytest.fixture
def cloud(models_dir: Path) -> InProcessCloudClient:
    return InProcessCloudClient(models_dir / "digits_cloud.onnx")


def test_cascade_accuracy_on_heldout(slot: ModelSlot, cloud: InProcessCloudClient, digits_split) -> None:
    _, held = digits_split
    cascade = Cascade(slot, MaxProbabilityPolicy(0.68), cloud=cloud)
    answers = [cascade.answer(CascadeRequest(row, request_id=str(i))) for i, row in enumerate(held.features)]
    correct = np.array([int(a.label) for a in answers]) == held.labels
    escalated = sum(a.escalated for a in answers)
    cloud_only = (cloud.probabilities(held.features).argmax(axis=1) == held.labels).mean()
    assert cloud.calls == escalated and 0 < escalated <= 0.10 * len(answers)
    assert correct.mean() >= 0.995 * cloud_only  # the quality target
    sources = {a.source for a in answers}
    assert sources == {"edge", "cloud"}
    for a in answers:
        assert a.edge_model is not None and a.edge_model.version == "1.0.0"
        assert (a.source == "cloud") == a.escalated and not a.degraded
        if a.source == "cloud":
            assert (
                a.cloud_model is not None
                and a.cloud_model.name == "digits-cloud"
                and a.edge_label is not None
            )


def test_offline_device_answers_locally_marked_degraded(slot: ModelSlot, digits_split) -> None:
    _, held = digits_split
    cascade = Cascade(slot, MaxProbabilityPolicy(0.999), cloud=NullCloudClient())
    answer = cascade.answer(CascadeRequest(held.features[0]))
    assert answer.source == "edge" and answer.escalated and answer.degraded
    assert "no cloud configured" in answer.reason


class FailingCloud(CloudClient):
    """A real client implementation whose cloud always refuses: exercises the cascade's handling."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def infer(self, features: np.ndarray, *, request_id: str, raw_input: bytes | None = None) -> CloudAnswer:
        self.calls += 1
        raise self.error


def test_auth_failure_is_logged_once(slot: ModelSlot, digits_split, caplog: pytest.LogCaptureFixture) -> None:
    _, held = digits_split
    cascade = Cascade(slot, MaxProbabilityPolicy(1.01), cloud=FailingCloud(CloudAuthError("401 bad token")))
    answers = [cascade.answer(CascadeRequest(row)) for row in held.features[:5]]
    assert all(a.degraded and a.reason.endswith("cloud auth failed") for a in answers)
    assert sum("refused this device's token" in r.message for r in caplog.records) == 1
    open_breaker = Cascade(slot, MaxProbabilityPolicy(1.01), cloud=FailingCloud(CircuitOpenError("open")))
    assert open_breaker.answer(CascadeRequest(held.features[0])).reason.endswith("cloud breaker open")


def test_budget_returns_local_answer_with_reason(
    slot: ModelSlot, cloud: InProcessCloudClient, digits_split
) -> None:
    _, held = digits_split
    cascade = Cascade(
        slot, MaxProbabilityPolicy(1.01), cloud=cloud, budget=EscalationBudget(max_fraction=0.05)
    )
    answers = [cascade.answer(CascadeRequest(row)) for row in held.features[:100]]
    over = [a for a in answers if "over escalation budget" in a.reason]
    assert cloud.calls == sum(a.escalated for a in answers) == 100 - len(over)
    assert cloud.calls <= 0.05 * 100 + 1
    assert all(a.source == "edge" and a.degraded and not a.escalated for a in over)


def test_random_samples_measure_agreement(slot: ModelSlot, cloud: InProcessCloudClient, digits_split) -> None:
    _, held = digits_split
    policy = AnyOf([MaxProbabilityPolicy(0.0), RandomSamplePolicy(0.2, seed=1)])
    cascade = Cascade(slot, policy, cloud=cloud)
    answers = [cascade.answer(CascadeRequest(row)) for row in held.features[:200]]
    sampled = [a for a in answers if a.sampled]
    assert 20 <= len(sampled) <= 60 and cloud.calls == len(sampled)
    agreement = np.mean([a.edge_label == a.label for a in sampled])
    assert agreement > 0.9  # the edge model is 97% accurate
    assert cascade.agreement_samples == len(sampled)
    assert cascade.agreement_hits == sum(a.edge_label == a.label for a in sampled)


def test_observers_see_every_answer(slot: ModelSlot, digits_split) -> None:
    _, held = digits_split
    seen: list[tuple[str | None, str]] = []
    cascade = Cascade(slot, observers=[lambda req, ans, dec: seen.append((req.request_id, ans.source))])
    for i in range(10):
        cascade.answer(CascadeRequest(held.features[i], request_id=f"r{i}"))
    assert [rid for rid, _ in seen] == [f"r{i}" for i in range(10)]
