"""Deferral is handed to the agent's first classifier while the agent is built (no observer
appended to a running cascade), with that model's own cloud client and answer cache; without a
classifier its parts stay do-nothing ones."""

from __future__ import annotations

from pathlib import Path

from edgecascade.edge.agent import Agent
from edgecascade.edge.cloud_client.in_process import InProcessCloudClient
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.deferred import Deferral
from edgecascade.edge.tasks.classification import ClassificationTask
from edgecascade.tools.model_import import ImportAnswers, import_model
from tests.edge.tasks import onnx_models


def _profile(tmp_path: Path, models: list[dict[str, str]]) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "profile": "test",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 512,
            "runtime": {"warmup_runs": 0},
            "telemetry": {"enabled": False},
            "models": models,
        }
    )


def test_the_first_classifier_gets_the_deferred_observer_at_construction(
    tmp_path: Path, models_dir: Path
) -> None:
    profile = _profile(
        tmp_path,
        [
            {"name": "a", "path": str(models_dir / "digits_edge_int8.onnx")},
            {"name": "b", "path": str(models_dir / "digits_edge_fp32.onnx")},
        ],
    )
    deferral = Deferral(profile, None, None)
    cloud = InProcessCloudClient(models_dir / "digits_cloud.onnx")
    agent = Agent.from_profile(profile, cloud=cloud, observers_for=deferral.observers_for)
    try:
        parts = deferral.parts
        assert deferral.model == "a" and parts.worker is not None and len(parts.services) == 2
        a, b = (agent.get(m).task for m in ("a", "b"))
        assert isinstance(a, ClassificationTask) and isinstance(b, ClassificationTask)
        assert parts.observer in a.cascade.observers and parts.observer not in b.cascade.observers
        assert parts.worker.cloud is a.cascade.cloud  # the cascade's own client: one breaker
        assert parts.worker.cache is agent.model_lookups["a"].cache
    finally:
        agent.close()
        deferral.parts.close()


def test_an_agent_without_a_classifier_keeps_do_nothing_deferral(tmp_path: Path) -> None:
    edge = onnx_models.dynamic(tmp_path / "energy.onnx")
    import_model(edge, ImportAnswers(name="energy")).card.save_beside(edge)
    profile = _profile(tmp_path, [{"name": "energy", "path": str(edge)}])
    deferral = Deferral(profile, None, None)
    agent = Agent.from_profile(profile, observers_for=deferral.observers_for)
    agent.close()
    assert deferral.model is None and deferral.parts.services == [] and deferral.parts.queue is None
    assert deferral.parts.counters()["queued"] == 0
