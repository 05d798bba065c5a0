"""The detection cascade against a real `cloud serve` whose detector differs from the edge's:
the committed digit detectors (edge: raw anchor outputs decoded with NMS on the device; cloud:
SSD-style outputs, NMS in its graph), and a cloud detector of another input size that gets the
frame itself and prepares it with its own card's pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import requests

from edgecascade.edge.agent import Agent
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.tasks import TaskRequest
from edgecascade.shared.errors import ConfigError
from edgecascade.shared.features.image import encode_image
from edgecascade.shared.features.spec import ImageEncoding
from edgecascade.shared.model_card import ModelCard
from edgecascade.tools import build_detector as det
from edgecascade.tools.build_detector_data import canvas_splits
from tests.edge.tasks import onnx_models
from tests.support.cloud_server import cloud_server

MODELS = Path(__file__).resolve().parents[2] / "fixtures" / "models"


def _profile(tmp_path: Path, url: str, entry: dict[str, Any], raw: bool = False) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "profile": "test",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 512,
            "cloud": {"url": url, "model": "unused", "send_raw_input": raw},
            "deferred": {"enabled": False},
            "telemetry": {"enabled": False},
            "lookup": {"cache": {"enabled": False}},
            "models": [entry],
        }
    )


def _digit_detector(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(MODELS / name, dest)
    det.detection_card(ModelCard.load_for(MODELS / name)).model_copy(update={"file": dest.name}).save_beside(
        dest
    )
    return dest


def test_uncertain_canvases_get_the_cloud_detectors_decoded_answer(tmp_path: Path) -> None:
    edge = _digit_detector("digit_detector_int8.onnx", tmp_path / "edge" / "digit_detector_int8.onnx")
    repo = tmp_path / "repo"
    cloud_model = _digit_detector(
        "digit_detector_cloud.onnx", repo / "digit-detector-cloud" / "1" / "model.onnx"
    )
    _, held = canvas_splits(train_count=1, held_count=12)
    bare = ort.InferenceSession(str(cloud_model), providers=["CPUExecutionProvider"])
    entry = {
        "name": "digits",
        "path": str(edge),
        "cloud_model": "digit-detector-cloud",
        "cascade": {"policies": [{"kind": "entropy", "threshold": 0.5}], "max_escalation_fraction": 1.0},
        "detection": {"uncertain_low": 0.3, "uncertain_high": 0.9, "report_threshold": 0.5},
    }
    with cloud_server(repo) as cloud:
        meta = requests.get(f"{cloud.url}/v2/models/digit-detector-cloud", timeout=5).json()
        assert [o["name"] for o in meta["outputs"]][-5:] == [
            "detection_boxes",
            "detection_scores",
            "detection_classes",
            "detection_labels",
            "detection_count",
        ]
        for answer in ("auto", "decoded"):
            agent = Agent.from_profile(
                _profile(tmp_path, cloud.url, {**entry, "cloud_detection": {"answer": answer}})
            )
            try:
                replies = [
                    agent.infer("digits", TaskRequest({"image": held.images[i : i + 1]}, request_id=f"c{i}"))
                    for i in range(len(held.images))
                ]
                counters = agent.counters()
            finally:
                agent.close()
            records = [r.provenance[0] for r in replies]
            clouded = [i for i, r in enumerate(records) if r["source"] == "cloud"]
            assert clouded and len(clouded) < len(records), [r["reason"] for r in records]
            assert counters["model_digits_frames_escalated"] == len(clouded)
            for i in clouded:
                record = records[i]
                assert record["escalated"] and not record["degraded"]
                assert record["cloud_model"] == "digit-detector-cloud:1"
                outputs = dict(
                    zip(
                        ["boxes", "classes", "scores", "count"],
                        bare.run(None, {"image": held.images[i : i + 1]}),
                        strict=True,
                    )
                )
                want = [d for d in det.cloud_detections(outputs) if d.score >= 0.5]
                got = record["detections"]
                assert [d["label"] for d in got] == [str(w.class_id) for w in want]
                assert np.allclose([d["score"] for d in got], [w.score for w in want], atol=1e-6)
                assert np.allclose(
                    np.reshape([d["box"] for d in got], (-1, 4)),
                    np.reshape([w.box for w in want], (-1, 4)),
                    atol=1e-6,
                )
                assert replies[i].outputs["source"][0] == b"cloud"
                assert int(replies[i].outputs["detection_count"][0]) == len(want)
            for i in set(range(len(records))) - set(clouded):
                assert records[i]["source"] == "edge" and records[i]["escalated"] is False, records[i][
                    "reason"
                ]


def _with_pipeline(path: Path, side: int, task: dict[str, Any]) -> Path:
    """A card for onnx_models.detector: its image input prepared from a picture at `side` px."""
    from edgecascade.tools.model_import import ImportAnswers, import_model

    card = import_model(path, ImportAnswers(name=path.stem, task="tensor")).card
    pipeline = ImageEncoding(width=side, height=side, color="rgb", scale=1 / 255, layout="nhwc")
    inputs = [t.model_copy(update={"pipeline": pipeline}) for t in card.inputs]
    ModelCard.model_validate({**card.model_dump(), "inputs": inputs, **task}).save_beside(path)
    return path


def test_a_frame_goes_as_an_image_to_a_cloud_detector_of_another_size_and_format(tmp_path: Path) -> None:
    edge = _with_pipeline(
        onnx_models.detector(tmp_path / "edge.onnx", side=8),
        8,
        {
            "task": "detection",
            "detection": {"boxes_output": "boxes", "scores_output": "scores"},
            "labels": ["person"],
        },
    )
    repo = tmp_path / "repo"
    (repo / "peer-detector" / "1").mkdir(parents=True)
    # The cloud model takes 16 px images, names its outputs otherwise and its card has no
    # detection section: the device decodes its own outputs with cloud_detection.card.
    cloud_model = onnx_models.detector(repo / "peer-detector" / "1" / "model.onnx", detections=4, side=16)
    _with_pipeline(cloud_model, 16, {})
    picture = np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    pipeline = ImageEncoding(width=16, height=16, color="rgb", scale=1 / 255, layout="nhwc")
    bare = ort.InferenceSession(str(cloud_model), providers=["CPUExecutionProvider"])
    boxes, scores = bare.run(["boxes", "scores"], {"image": encode_image(picture, pipeline)[None]})
    entry = {
        "name": "cam",
        "path": str(edge),
        "cloud_model": "peer-detector",
        "detection": {"uncertain_low": 0.0, "uncertain_high": 1.0, "report_threshold": 0.0},
        "cloud_detection": {
            "answer": "outputs",
            "send": "image",
            "card": {"boxes_output": "boxes", "scores_output": "scores", "box_format": "xyxy"},
            "labels": ["car"],
        },
    }
    with cloud_server(repo) as cloud:
        agent = Agent.from_profile(_profile(tmp_path, cloud.url, entry, raw=True))
        try:
            reply = agent.infer("cam", TaskRequest({"image": picture}, request_id="p1"))
        finally:
            agent.close()
    record = reply.provenance[0]
    assert record["source"] == "cloud" and not record["degraded"], record["reason"]
    order = np.argsort(-scores[0], kind="stable")
    assert [d["score"] for d in record["detections"]] == [float(scores[0, k]) for k in order]
    assert [d["box"] for d in record["detections"]] == [[float(v) for v in boxes[0, k]] for k in order]
    assert {d["label"] for d in record["detections"]} == {"car"}


def test_sending_the_image_needs_the_profiles_consent(tmp_path: Path) -> None:
    edge = _with_pipeline(
        onnx_models.detector(tmp_path / "edge.onnx", side=8),
        8,
        {"task": "detection", "detection": {"boxes_output": "boxes", "scores_output": "scores"}},
    )
    entry = {"name": "cam", "path": str(edge), "cloud_detection": {"send": "image"}}
    with pytest.raises(ConfigError, match="send_raw_input"):
        Agent.from_profile(_profile(tmp_path, "http://127.0.0.1:9", entry))
