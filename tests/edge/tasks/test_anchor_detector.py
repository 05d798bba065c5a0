"""The real int8 digit detector (raw anchor outputs, tools/build_models.py) served as a detection
task: the agent's anchor decoder gives what shared/detection gives on the bare interpreter."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgecascade.edge.agent import Agent
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.tasks import TaskRequest
from edgecascade.shared.backends import BackendOptions, load_backend
from edgecascade.shared.card_check import card_problems
from edgecascade.shared.detection import from_raw_outputs
from edgecascade.shared.detection.anchors import GridAnchors
from edgecascade.shared.model_card import AnchorDecoding, DetectionCard, ModelCard

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"
GRID = AnchorDecoding(image_size=(64, 64), size=16, stride=4, nms_iou=0.3, max_detections=10)


def _detector(tmp_path: Path) -> Path:
    path = tmp_path / "digit_detector_int8.onnx"
    shutil.copy(MODELS / path.name, path)
    card = ModelCard.load_for(MODELS / path.name).model_copy(
        update={
            "task": "detection",
            "detection": DetectionCard(
                format="anchors", boxes_output="deltas", scores_output="scores", min_score=0.5, anchors=GRID
            ),
        }
    )
    card.save_beside(path)
    return path


def _profile(tmp_path: Path, detector: Path) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "profile": "test",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 512,
            "deferred": {"enabled": False},
            "telemetry": {"enabled": False},
            "lookup": {"cache": {"enabled": False}},
            "models": [
                {
                    "name": "digits",
                    "path": str(detector),
                    # An empty uncertain band: the device answers every frame alone.
                    "detection": {"uncertain_low": 0.5, "uncertain_high": 0.5, "report_threshold": 0.5},
                }
            ],
        }
    )


def test_anchor_detections_equal_shared_detection_on_the_bare_interpreter(tmp_path: Path) -> None:
    detector = _detector(tmp_path)
    frames = np.load(MODELS / "digit_detector_int8.onnx.sample.npz")["image"]
    bare = load_backend(detector, BackendOptions()).predict({"image": frames})
    want = from_raw_outputs(
        bare["scores"][:1],
        bare["deltas"][:1],
        GridAnchors((64, 64), 16, 4).cxcywh(),
        score_threshold=0.5,
        iou_threshold=0.3,
        max_detections=10,
    )
    assert want, "the sample canvas holds digits the detector finds"
    agent = Agent.from_profile(_profile(tmp_path, detector))
    try:
        reply = agent.infer("digits", TaskRequest({"image": frames}, request_id="canvas"))
    finally:
        agent.close()
    got = reply.provenance[0]["detections"]
    assert [d["label"] for d in got] == [str(w.class_id) for w in want]
    assert [d["score"] for d in got] == [w.score for w in want]
    assert [d["box"] for d in got] == [list(w.box) for w in want]
    assert int(reply.outputs["detection_count"][0]) == len(want)
    assert np.array_equal(reply.outputs["scores"], bare["scores"])  # the model's own outputs too


def test_an_anchor_card_without_its_grid_is_refused(tmp_path: Path) -> None:
    detector = _detector(tmp_path)
    card = ModelCard.load_for(detector)
    assert card.detection is not None
    broken = card.model_copy(update={"detection": card.detection.model_copy(update={"anchors": None})})
    signature = load_backend(detector, BackendOptions()).signature
    problems = card_problems(broken, signature)
    assert any(p.startswith("detection.anchors:") for p in problems), problems
    with pytest.raises(ValueError):
        AnchorDecoding(image_size=(64, 64), size=0, stride=4)
