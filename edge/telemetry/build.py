"""Turn a profile's [telemetry] section into the observer and services the daemon runs: the
buffer, the recorder, and the sink named by `telemetry.sink` (edge/telemetry/sinks.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgecascade.edge.answer import Answer
from edgecascade.edge.cascade import AnswerObserver, CascadeRequest
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.policies import Decision
from edgecascade.edge.service import Service
from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.edge.telemetry.recorder import TelemetryRecorder
from edgecascade.edge.telemetry.sinks import SinkContext, TelemetrySink, make_sink

if TYPE_CHECKING:
    from edgecascade.shared.mqtt import MqttConnection

log = logging.getLogger(__name__)

BUFFER_FILE = "telemetry.sqlite3"


def _no_telemetry(request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
    """The observer of a device with telemetry switched off."""


@dataclass
class TelemetryParts:
    """What `build()` made; `recorder` and `sink` are None where switched off."""

    observer: AnswerObserver
    services: list[Service] = field(default_factory=list)
    buffer: TelemetryBuffer | None = None
    recorder: TelemetryRecorder | None = None
    sink: TelemetrySink | None = None

    def observer_for(self, model: str, task: str) -> AnswerObserver:
        """The observer of one served model's answers: records name the model (do-nothing off)."""
        return self.observer if self.recorder is None else self.recorder.observer_for(model, task)

    def close(self) -> None:
        """After the services stopped: close the buffer, so SQLite checkpoints its WAL into the
        file and the next start opens a clean one (a leftover -wal is checked at every open)."""
        if self.buffer is not None:
            self.buffer.close()


def build(
    profile: DeviceProfile,
    connection: MqttConnection | None,
    *,
    counters: Callable[[], dict[str, float]] | None = None,
    clock: Callable[[], float] = time.time,
) -> TelemetryParts:
    """Open the buffer and make the recorder (observer + writer service) and the profile's
    sink (None when it cannot send, e.g. mqtt switched off). Services are listed in start order.
    `counters` gives the agent's counters for every metrics record (called only once running)."""
    section = profile.telemetry
    if not section.enabled:
        log.info("telemetry is switched off in the profile")
        return TelemetryParts(_no_telemetry)
    path = section.buffer_path or profile.data_dir / BUFFER_FILE
    buffer = TelemetryBuffer(
        path,
        max_bytes=section.max_bytes,
        max_age_s=section.max_age_s,
        synchronous=section.synchronous,
        clock=clock,
    )
    recorder = TelemetryRecorder(buffer, section, clock=clock)
    recorder.counters_source = counters
    parts = TelemetryParts(recorder, [recorder], buffer, recorder)
    parts.sink = make_sink(section.sink, SinkContext(profile, buffer, connection))
    if parts.sink is not None:
        parts.services.append(parts.sink)
    log.info("telemetry buffer %s holds %d records (last seq %d)", path, buffer.depth, buffer.last_seq)
    return parts
