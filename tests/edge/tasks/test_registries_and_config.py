"""Kinds named once: the task and policy registries cover exactly the kinds cards, profiles
and manifests accept, and an unknown kind is an error naming the known ones. [[models]] in a
profile: several models, each with its own settings; [model] is still read."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecascade.edge.config import load_profile
from edgecascade.edge.policies.registry import POLICIES
from edgecascade.edge.tasks.registry import TASKS
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.manifest import EscalationThreshold
from edgecascade.shared.model_card import TASK_KINDS, ModelCard
from edgecascade.shared.policy_kinds import POLICY_KINDS

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "models"


def test_registries_match_the_named_kinds() -> None:
    assert set(TASKS) == set(TASK_KINDS) == {"classification", "detection", "tensor"}
    assert set(POLICIES) == set(POLICY_KINDS) == {"max_prob", "margin", "entropy"}


def test_unknown_kinds_name_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown escalation policy kind 'p99'; known kinds: max_prob, margin, entropy"
    ):
        EscalationThreshold(kind="p99", threshold=0.5)
    card = ModelCard.load_for(FIXTURES / "digits_edge_fp32.onnx").model_dump()
    with pytest.raises(
        ValueError, match="unknown task 'ranking'; known tasks: classification, detection, tensor"
    ):
        ModelCard.model_validate({**card, "task": "ranking"})


def test_schema_1_cards_are_upgraded_with_their_pipeline() -> None:
    card = ModelCard.load_for(FIXTURES / "digits_edge_int8.tflite")
    assert card.schema_version == 1 and card.task == "classification"
    assert card.inputs[0].pipeline is not None and card.inputs[0].pipeline.width == 8


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "device.toml"
    path.write_text(f'profile = "t"\ndata_dir = "{tmp_path}"\nmemory_budget_mb = 100\n' + body)
    return path


def test_models_list_each_with_its_own_settings(tmp_path: Path) -> None:
    profile = load_profile(
        _write(
            tmp_path,
            f'[[models]]\nname = "a"\npath = "{FIXTURES}/digits_edge_fp32.onnx"\ncloud_model = "digits-cloud"\n'
            'cascade = { policies = [{ kind = "margin", threshold = 0.3 }], max_escalation_fraction = 0.2 }\n'
            f'[[models]]\nname = "b"\npath = "{FIXTURES}/digits_edge_int8.tflite"\n'
            "detection = { uncertain_low = 0.2, uncertain_high = 0.4, max_count = 3 }\n",
        ),
        environ={},
    )
    a, b = profile.model_entries()
    assert profile.model.name == "a"  # updates and tools address the first model
    assert (
        a.cascade is not None
        and a.cascade.policies[0].kind == "margin"
        and a.cascade.max_escalation_fraction == 0.2
    )
    assert b.cascade is None and b.cloud_model is None and b.detection.max_count == 3


def test_single_model_section_is_a_repository_of_one(tmp_path: Path) -> None:
    profile = load_profile(
        _write(tmp_path, f'[model]\nname = "x"\npath = "{FIXTURES}/digits_edge_fp32.onnx"\n'), environ={}
    )
    (entry,) = profile.model_entries()
    assert entry.name == "x" and entry.cloud_model == "digits-cloud" and entry.cascade == profile.cascade


def test_model_names_must_be_unique(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f'[[models]]\nname = "a"\npath = "{FIXTURES}/digits_edge_fp32.onnx"\n'
        f'[[models]]\nname = "a"\npath = "{FIXTURES}/digits_edge_int8.tflite"\n',
    )
    with pytest.raises(ConfigError, match=r"names must be unique, \['a'\]"):
        load_profile(path, environ={})


def test_unknown_detection_format_is_refused_at_start(tmp_path: Path) -> None:
    import json

    from edgecascade.edge.agent import Agent
    from edgecascade.edge.config.embedded import embedded_profile
    from edgecascade.shared.errors import ModelError
    from edgecascade.tools.model_import import ImportAnswers, import_model
    from tests.edge.tasks import onnx_models

    path = onnx_models.detector(tmp_path / "det.onnx")
    card_path = import_model(path, ImportAnswers(task="detection")).card.save_beside(path)
    card = json.loads(card_path.read_text())
    card["detection"]["format"] = "yolo-v99"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelError, match="unknown detection format 'yolo-v99'; known formats: postprocessed"):
        Agent.from_profile(embedded_profile([path]))


def test_model_and_models_must_agree(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f'[model]\nname = "x"\npath = "{FIXTURES}/digits_edge_fp32.onnx"\n'
        f'[[models]]\nname = "a"\npath = "{FIXTURES}/digits_edge_int8.tflite"\n',
    )
    with pytest.raises(
        ConfigError, match=r"\[model\] \('x'\) and the first \[\[models\]\] entry \('a'\) differ"
    ):
        load_profile(path, environ={})
