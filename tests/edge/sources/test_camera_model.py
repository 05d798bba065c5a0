"""[camera] model names the served classifier that answers the frames; a model that is not a
classifier, or not served, is a profile error naming camera.model."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecascade.edge.agent import Agent
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.sources import ClassifierFrames, DetectorFrames
from edgecascade.edge.sources.wiring import build
from edgecascade.shared.errors import ConfigError
from tests.edge.tasks.test_anchor_detector import _detector

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"


def _profile(tmp_path: Path, camera_model: str | None) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "profile": "test",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 512,
            "deferred": {"enabled": False},
            "telemetry": {"enabled": False},
            "lookup": {"cache": {"enabled": False}},
            "camera": {"enabled": True, "model": camera_model},
            "models": [
                {"name": "digits-detector", "path": str(_detector(tmp_path))},
                {"name": "digits-edge", "path": str(MODELS / "digits_edge_int8.onnx")},
                {"name": "energy", "path": str(_tensor_model(tmp_path))},
            ],
        }
    )


def _tensor_model(tmp_path: Path) -> Path:
    from edgecascade.tools.model_import import ImportAnswers, import_model
    from tests.edge.tasks import onnx_models

    path = onnx_models.dynamic(tmp_path / "energy.onnx")
    import_model(path, ImportAnswers(name="energy")).card.save_beside(path)
    return path


def test_the_camera_answers_with_a_named_detector(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "digits-detector")
    agent = Agent.from_profile(profile)
    try:
        source = build(profile, agent, None)
        assert source is not None and isinstance(source.frames, DetectorFrames)
        assert source.frames.task is agent.get("digits-detector").task
    finally:
        agent.close()


def test_the_camera_answers_with_the_named_classifier(tmp_path: Path) -> None:
    profile = _profile(tmp_path, "digits-edge")
    agent = Agent.from_profile(profile)
    try:
        source = build(profile, agent, None)
        assert source is not None
        assert isinstance(source.frames, ClassifierFrames)
        assert source.frames.cascade is agent.cascade  # the one classifier's cascade, not the detector's
        assert source.frames.cascade.slot.current.card.name == "digits-edge"
    finally:
        agent.close()


@pytest.mark.parametrize(
    ("name", "words"),
    [("energy", "is a tensor model"), ("nope", "unknown model 'nope'")],
)
def test_a_camera_model_that_is_no_served_classifier_is_a_profile_error(
    tmp_path: Path, name: str, words: str
) -> None:
    profile = _profile(tmp_path, name)
    agent = Agent.from_profile(profile)
    try:
        with pytest.raises(ConfigError, match=words) as caught:
            build(profile, agent, None)
        assert caught.value.key == "camera.model"
    finally:
        agent.close()
