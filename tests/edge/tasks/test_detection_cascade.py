"""The detection cascade against a real cloud detector (`cloud serve` in a subprocess): a
frame with a detection in the uncertain band goes to the cloud, whose detections come back
with provenance; a confident frame stays on the device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from edgecascade.edge.agent import Agent
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.tasks import TaskRequest
from edgecascade.tools.model_import import ImportAnswers, import_model
from tests.edge.tasks import onnx_models
from tests.support.cloud_server import cloud_server


def _profile(tmp_path: Path, detector: Path, url: str, low: float, high: float) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {
            "profile": "test",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 512,
            "cloud": {"url": url, "model": "unused"},
            "deferred": {"enabled": False},
            "telemetry": {"enabled": False},
            "lookup": {"cache": {"enabled": False}},
            "models": [
                {
                    "name": "cam-detector",
                    "path": str(detector),
                    "cloud_model": "big-detector",
                    "detection": {"uncertain_low": low, "uncertain_high": high, "report_threshold": 0.5},
                }
            ],
        }
    )


def test_uncertain_frames_are_answered_by_the_cloud_detector(tmp_path: Path) -> None:
    edge = onnx_models.detector(tmp_path / "edge.onnx")
    card = import_model(edge, ImportAnswers(name="cam-detector", task="detection", labels=["person"])).card
    card.save_beside(edge)
    repo = tmp_path / "repo"
    (repo / "big-detector" / "1").mkdir(parents=True)
    cloud_model = onnx_models.detector(repo / "big-detector" / "1" / "model.onnx", detections=5)
    frame = np.random.default_rng(3).random((1, 8, 8, 3), dtype=np.float32)
    session = ort.InferenceSession(str(cloud_model), providers=["CPUExecutionProvider"])
    cloud_scores = session.run(["scores"], {"image": frame})[0][0]
    with cloud_server(repo) as cloud:
        # Every score is "uncertain": the frame goes to the cloud detector.
        agent = Agent.from_profile(_profile(tmp_path, edge, cloud.url, 0.0, 1.0))
        try:
            reply = agent.infer("cam-detector", TaskRequest({"image": frame}, request_id="f1"))
        finally:
            agent.close()
        record = reply.provenance[0]
        assert record["source"] == "cloud" and record["escalated"] is True and record["degraded"] is False
        assert record["cloud_model"] == "big-detector:1"
        want = np.sort(cloud_scores[cloud_scores >= 0.5])[::-1]
        assert [d["score"] for d in record["detections"]] == [float(s) for s in want]
        assert all(d["label"] == "person" and len(d["box"]) == 4 for d in record["detections"])
        assert int(reply.outputs["detection_count"][0]) == len(want)
        assert reply.outputs["source"][0] == b"cloud"
        # An empty band: nothing is uncertain, the device answers alone.
        agent = Agent.from_profile(_profile(tmp_path, edge, cloud.url, 0.5, 0.5))
        try:
            reply = agent.infer("cam-detector", TaskRequest({"image": frame}, request_id="f2"))
        finally:
            agent.close()
        assert reply.provenance[0]["source"] == "edge" and reply.provenance[0]["escalated"] is False


def test_a_tensor_model_escalates_only_on_its_cards_score(tmp_path: Path) -> None:
    edge = onnx_models.dynamic(tmp_path / "energy.onnx")
    import_model(edge, ImportAnswers(name="energy", escalate="energy>0.2")).card.save_beside(edge)
    repo = tmp_path / "repo"
    (repo / "big-energy" / "1").mkdir(parents=True)
    onnx_models.dynamic(repo / "big-energy" / "1" / "model.onnx")
    loud = np.full((1, 4), 0.9, dtype=np.float32)
    quiet = np.full((1, 4), 0.1, dtype=np.float32)
    with cloud_server(repo) as cloud:
        profile = DeviceProfile.model_validate(
            {
                "profile": "test",
                "data_dir": str(tmp_path / "data"),
                "memory_budget_mb": 512,
                "cloud": {"url": cloud.url},
                "deferred": {"enabled": False},
                "telemetry": {"enabled": False},
                "lookup": {"cache": {"enabled": False}},
                "models": [{"name": "energy", "path": str(edge), "cloud_model": "big-energy"}],
            }
        )
        agent = Agent.from_profile(profile)
        try:
            hard = agent.infer("energy", TaskRequest({"audio": loud}, request_id="a1"))
            easy = agent.infer("energy", TaskRequest({"audio": quiet}, request_id="a2"))
            counters = agent.counters()
        finally:
            agent.close()
    record = hard.provenance[0]
    assert record["escalated"] is True and record["degraded"] is False and record["source"] == "cloud"
    assert record["reason"] == "energy 0.810 > 0.200" and record["cloud_model"] == "big-energy:1"
    assert np.array_equal(hard.outputs["energy"], np.mean(loud * loud, axis=1, keepdims=True))
    assert np.array_equal(hard.outputs["squared"], loud * loud)
    assert easy.provenance[0]["escalated"] is False and easy.provenance[0]["reason"] == "confident"
    assert counters["model_energy_requests"] == 2.0 and counters["model_energy_escalated"] == 1.0
