"""Camera events: one JSON record per answered frame, published like an NVR's detections, and
the EventSink interface that publishes them. This module has no MQTT code (see mqtt_sink.py)."""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Protocol

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


class EventSink(Protocol):
    """Where events go. `publish` is called from the camera worker thread once per answered
    frame; it must not block for long and must count (not raise) what it cannot deliver."""

    def publish(self, event: CameraEvent) -> None: ...

    def counters(self) -> dict[str, int]:
        """Delivery counters for metrics and telemetry."""
        ...


class MemoryEventSink:
    """The most recent `maxlen` events in memory: the sink when MQTT is off, and what a local
    API shows as recent detections. Older events fall out; `evicted` counts them."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._events: deque[CameraEvent] = deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self.published = 0
        self.evicted = 0

    def publish(self, event: CameraEvent) -> None:
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.evicted += 1
            self._events.append(event)
            self.published += 1

    def recent(self, limit: int | None = None) -> list[CameraEvent]:
        """The newest `limit` events (all kept ones by default), oldest first."""
        with self._lock:
            events = list(self._events)
        return events if limit is None else events[-limit:]

    def counters(self) -> dict[str, int]:
        return {"events_published": self.published, "events_evicted": self.evicted}
