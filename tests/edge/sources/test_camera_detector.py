"""A camera running a detector: a real video of held-out digit canvases, the int8 edge detector
in the agent, hard frames escalated to the cloud detector of a real `cloud serve`, and
per-object events (new, update, end) over a real broker to a real subscriber."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from edgecascade.edge.agent import Agent
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.sources import DetectorFrames, build_camera_source
from edgecascade.shared.detection.boxes import iou_matrix
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.tools.build_detector_data import canvas_splits
from edgecascade.tools.make_video import read_objects, write_canvas_video
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.sources.test_camera_mqtt import Subscriber
from tests.edge.tasks.test_cloud_detector_formats import _digit_detector
from tests.support.cloud_server import cloud_server

CANVASES, HOLD = 10, 3


def _profile(tmp_path: Path, video: Path, cloud_url: str) -> DeviceProfile:
    edge = _digit_detector("digit_detector_int8.onnx", tmp_path / "edge" / "digit_detector_int8.onnx")
    return DeviceProfile.model_validate(
        {
            "profile": "test",
            "device_id": "cam-0001",
            "fleet": "lab",
            "data_dir": str(tmp_path / "data"),
            "memory_budget_mb": 512,
            "cloud": {"url": cloud_url, "model": "unused"},
            "deferred": {"enabled": False},
            "telemetry": {"enabled": False},
            "lookup": {"cache": {"enabled": False}},
            "camera": {
                "enabled": True,
                "model": "digits",
                "source": str(video),
                "fps": 10,
                "event_qos": 1,
            },
            "models": [
                {
                    "name": "digits",
                    "path": str(edge),
                    "cloud_model": "digit-detector-cloud",
                    "cascade": {
                        "policies": [{"kind": "entropy", "threshold": 0.5}],
                        "max_escalation_fraction": 1.0,
                    },
                    "detection": {"uncertain_low": 0.3, "uncertain_high": 0.9, "report_threshold": 0.5},
                }
            ],
        }
    )


def test_a_detector_camera_publishes_tracked_objects_answered_by_edge_and_cloud(
    tmp_path: Path, broker: BrokerProcess, connection: MqttConnection
) -> None:
    _, held = canvas_splits(train_count=1, held_count=CANVASES)
    video = tmp_path / "canvases.avi"
    write_canvas_video(video, held.images, held.boxes, held.classes, hold=HOLD, fps=10)
    truth = read_objects(video)
    assert len(truth) == CANVASES * HOLD
    repo = tmp_path / "repo"
    _digit_detector("digit_detector_cloud.onnx", repo / "digit-detector-cloud" / "1" / "model.onnx")
    topic = Topics("lab").events("cam-0001")
    with cloud_server(repo) as cloud:
        agent = Agent.from_profile(_profile(tmp_path, video, cloud.url))
        subscriber = Subscriber(broker.port, topic)
        try:
            assert subscriber.ready.wait(5.0)
            source = build_camera_source(agent, connection)
            assert source is not None and isinstance(source.frames, DetectorFrames)
            source.start()
            assert source.wait_finished(30.0), source.counters()
            source.stop(2.0)
            published = source.counters()["events_published"]
            subscriber.wait(published)
            counters = agent.counters()
        finally:
            subscriber.close()
            agent.close()
    events = subscriber.messages
    assert source.counters()["frames_processed"] == CANVASES * HOLD
    assert len(events) == published > 0
    assert {e["kind"] for e in events} == {"detection"}
    kinds = Counter(str(e["type"]) for e in events)
    # Every object that appears ends (the last ones when the file ends).
    assert kinds["new"] == kinds["end"] > 0 and kinds["update"] > 0
    by_id: dict[str, list[dict[str, object]]] = {}
    for e in events:
        by_id.setdefault(str(e["id"]), []).append(e)
    for trail in by_id.values():
        assert trail[0]["type"] == "new" and trail[-1]["type"] == "end"
        assert len({t["label"] for t in trail}) == 1
    first = events[0]
    assert set(first) == {
        "schema", "kind", "type", "id", "device", "source", "frame", "ts", "label", "score",
        "top_score", "box", "first_frame", "answered_by", "escalated", "degraded", "model",
    }  # fmt: skip
    assert first["device"] == "cam-0001" and first["source"] == str(video)
    # Hard frames were answered by the cloud detector, the rest on the device.
    clouded = [e for e in events if e["answered_by"] == "cloud"]
    assert clouded and len(clouded) < len(events)
    assert all(e["model"] == {"name": "digit-detector-cloud", "version": "1"} for e in clouded)
    assert counters["model_digits_frames_escalated"] > 0
    # What is seen is there: the objects of new/update events match a true digit (IoU 0.5).
    seen = [e for e in events if e["type"] != "end"]
    hits = 0
    for e in seen:
        objects = truth[int(str(e["frame"]))]
        same = [o["box"] for o in objects if o["label"] == e["label"]]
        if same and iou_matrix(np.array([e["box"]]), np.array(same)).max() >= 0.5:
            hits += 1
    assert hits / len(seen) >= 0.8, (hits, len(seen))
