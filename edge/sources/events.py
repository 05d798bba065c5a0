"""Camera events, published like an NVR's, and the EventSink interface that publishes them:
a classifier's CameraEvent (one per answered frame) and a detector's DetectionEvent (one per
tracked object and frame: new, update, end, as Frigate publishes them). No MQTT code here
(see mqtt_sink.py)."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

from edgecascade.edge.answer import Answer, ModelRef

log = logging.getLogger(__name__)

EVENT_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class CameraEvent:
    """`source` names the camera (credentials redacted); `answered_by` is the answer's
    provenance (edge, cloud, table, cache); `model` the model whose label this is; `frame` the
    frame's index since the source was (re)opened; `ts` unix seconds when it was read."""

    device: str
    frame: int
    ts: float
    label: str
    confidence: float
    source: str
    answered_by: str
    escalated: bool
    degraded: bool
    model: ModelRef | None
    schema: int = EVENT_SCHEMA

    @classmethod
    def from_answer(cls, answer: Answer, *, device: str, frame: int, ts: float, source: str) -> CameraEvent:
        model = answer.cloud_model if answer.source == "cloud" else answer.edge_model
        return cls(
            device=device,
            frame=frame,
            ts=ts,
            label=answer.label,
            confidence=answer.confidence,
            source=source,
            answered_by=answer.source,
            escalated=answer.escalated,
            degraded=answer.degraded,
            model=model,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class DetectionEvent:
    """One tracked object in one frame, the way NVRs publish detections: `type` is new (first
    seen), update (seen again: same label, overlapping box) or end (gone for a few frames; its
    last box and score). `id` names the object across its events; `box` is x_min, y_min, x_max,
    y_max (0..1 of the frame for normalized detectors); `top_score` the best score it had;
    `answered_by` edge or cloud (the frame's provenance), with `model` the detector that saw it."""

    type: Literal["new", "update", "end"]
    id: str
    device: str
    source: str
    frame: int
    ts: float
    label: str
    score: float
    top_score: float
    box: tuple[float, float, float, float]
    first_frame: int
    answered_by: str
    escalated: bool
    degraded: bool
    model: ModelRef | None
    schema: int = EVENT_SCHEMA
    kind: Literal["detection"] = "detection"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["box"] = list(self.box)
        return out

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()


#: What a camera publishes: a classifier's answer per frame, or a detector's per object.
Event = CameraEvent | DetectionEvent


class EventSink(Protocol):
    """Where events go. `publish` is called from the camera worker thread for every event of
    an answered frame; it must not block for long and must count (not raise) what it cannot deliver."""

    def publish(self, event: Event) -> None: ...

    def counters(self) -> dict[str, int]:
        """Delivery counters for metrics and telemetry."""
        ...


class MemoryEventSink:
    """The most recent `maxlen` events in memory: the sink when MQTT is off, and what a local
    API shows as recent detections. Older events fall out; `evicted` counts them."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._events: deque[Event] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.published = 0
        self.evicted = 0

    def publish(self, event: Event) -> None:
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.evicted += 1
            self._events.append(event)
            self.published += 1

    def recent(self, limit: int | None = None) -> list[Event]:
        """The newest `limit` events (all kept ones by default), oldest first."""
        with self._lock:
            events = list(self._events)
        return events if limit is None else events[-limit:]

    def counters(self) -> dict[str, int]:
        return {"events_published": self.published, "events_evicted": self.evicted}
