"""How a camera frame is answered, one small interface with two implementations: a
classifier's cascade gives one CameraEvent per frame; a detector's detection cascade (edge
detector, hard frames to the cloud detector) gives one DetectionEvent per tracked object."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

from edgecascade.edge.answer import ModelRef
from edgecascade.edge.cascade import Cascade, CascadeRequest
from edgecascade.edge.inputs import encode_raw
from edgecascade.edge.sources.events import CameraEvent, DetectionEvent, Event
from edgecascade.edge.sources.tracking import Change, ObjectTracker
from edgecascade.edge.tasks.base import TaskRequest
from edgecascade.shared.detection.decoders import LabeledDetection
from edgecascade.shared.errors import ConfigError, NotFoundError

if TYPE_CHECKING:
    from edgecascade.edge.agent import Agent
    from edgecascade.edge.config.profile import DeviceProfile
    from edgecascade.edge.tasks.detection import DetectionTask


class FrameAnswerer(Protocol):
    """Called from the camera worker thread, one frame at a time, in order."""

    def answer(self, image: np.ndarray, *, frame: int, ts: float, device: str, source: str) -> list[Event]:
        """The events of one BGR frame; raises for a frame that cannot be answered (counted)."""
        ...

    def finish(self, *, ts: float, device: str, source: str) -> list[Event]:
        """Events owed when the source stops (a detector's open objects end)."""
        ...


class ClassifierFrames:
    """One CameraEvent per frame: the classification cascade's answer."""

    def __init__(self, cascade: Cascade) -> None:
        self.cascade = cascade

    def answer(self, image: np.ndarray, *, frame: int, ts: float, device: str, source: str) -> list[Event]:
        features = encode_raw(image, self.cascade.slot.current.card.feature_spec())
        answer = self.cascade.answer(CascadeRequest(features, request_id=f"{source}#{frame}"))
        return [CameraEvent.from_answer(answer, device=device, frame=frame, ts=ts, source=source)]

    def finish(self, *, ts: float, device: str, source: str) -> list[Event]:
        return []


class DetectorFrames:
    """Each frame through the detection task (its policy escalates hard frames to the cloud
    detector), its reported detections tracked as objects: new, update and end events."""

    def __init__(self, task: DetectionTask, *, track_iou: float = 0.3, lost_after: int = 2) -> None:
        self.task = task
        self.tracker = ObjectTracker(task.parts.entry.name, iou=track_iou, lost_after=lost_after)
        self.last_frame = -1
        self.detections = 0

    def answer(self, image: np.ndarray, *, frame: int, ts: float, device: str, source: str) -> list[Event]:
        name = self.task.card.inputs[0].name
        reply = self.task.infer(TaskRequest({name: image}, request_id=f"{source}#{frame}"))
        record = reply.provenance[0]
        found = [
            LabeledDetection(str(d["label"]), int(d["class_index"]), float(d["score"]), tuple(d["box"]))
            for d in record["detections"]
        ]
        self.detections += len(found)
        self.last_frame = frame
        by = str(record["source"])
        model = _ref(record["cloud_model"] if by == "cloud" else record["edge_model"])
        events = (bool(record["escalated"]), bool(record["degraded"]), by, model)
        return [_event(c, device, source, frame, ts, *events) for c in self.tracker.update(frame, found)]

    def finish(self, *, ts: float, device: str, source: str) -> list[Event]:
        return [
            _event(c, device, source, self.last_frame, ts, False, False, "edge", None)
            for c in self.tracker.end_all()
        ]


def frame_answerer(profile: DeviceProfile, agent: Agent) -> FrameAnswerer:
    """How the model [camera] model names answers frames (default: the first classifier): a
    classifier's cascade, or a detector's detection cascade with its objects tracked."""
    from edgecascade.edge.tasks.classification import ClassificationTask
    from edgecascade.edge.tasks.detection import DetectionTask

    name = profile.camera.model
    if name is None:
        return ClassifierFrames(agent.cascade)
    try:
        task = agent.get(name).task
    except NotFoundError as exc:
        raise ConfigError(str(exc), key="camera.model") from None
    if isinstance(task, ClassificationTask):
        return ClassifierFrames(task.cascade)
    if isinstance(task, DetectionTask):
        camera = profile.camera
        return DetectorFrames(task, track_iou=camera.track_iou, lost_after=camera.track_lost_frames)
    raise ConfigError(
        f"model {name!r} is a {task.kind} model; the camera source answers frames with a classifier or a detector",
        key="camera.model",
    )


def _event(
    change: Change,
    device: str,
    source: str,
    frame: int,
    ts: float,
    escalated: bool,
    degraded: bool,
    answered_by: str,
    model: ModelRef | None,
) -> DetectionEvent:
    t = change.track
    return DetectionEvent(
        type=change.type,
        id=t.id,
        device=device,
        source=source,
        frame=frame,
        ts=ts,
        label=t.label,
        score=t.score,
        top_score=t.top_score,
        box=t.box,
        first_frame=t.first_frame,
        answered_by=answered_by,
        escalated=escalated,
        degraded=degraded,
        model=model,
    )


def _ref(text: object) -> ModelRef | None:
    """ "name:version" (a provenance record's model) -> ModelRef."""
    if not isinstance(text, str) or ":" not in text:
        return None
    name, version = text.rsplit(":", 1)
    return ModelRef(name, version)
