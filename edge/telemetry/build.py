"""Turn a profile's [telemetry] section into the observer and services the daemon runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgecascade.edge.cascade import AnswerObserver, CascadeRequest
from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.policies import Decision
from edgecascade.edge.service import Service
from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.edge.telemetry.recorder import TelemetryRecorder
from edgecascade.edge.telemetry.uplink import TelemetryUplink
from edgecascade.shared.answer import Answer
from edgecascade.shared.mqtt import Topics

if TYPE_CHECKING:
    from edgecascade.shared.mqtt import MqttConnection

log = logging.getLogger(__name__)

BUFFER_FILE = "telemetry.sqlite3"


def _no_telemetry(request: CascadeRequest, answer: Answer, decision: Decision | None) -> None:
    """The observer of a device with telemetry switched off."""


@dataclass
class TelemetryParts:
    """What `build()` made; `recorder` and `uplink` are None where switched off."""

    observer: AnswerObserver
    services: list[Service] = field(default_factory=list)
    buffer: TelemetryBuffer | None = None
    recorder: TelemetryRecorder | None = None
    uplink: TelemetryUplink | None = None

    def __iter__(self) -> Iterator[object]:
        # `observer, services = build(...)` unpacks like a tuple.
        return iter((self.observer, self.services))


def build(
    profile: DeviceProfile,
    connection: MqttConnection | None,
    *,
    clock: Callable[[], float] = time.time,
) -> TelemetryParts:
    """Open the buffer and make the recorder (observer + writer service) and, given a
    connection, the uplink service. Services are listed in start order."""
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
    parts = TelemetryParts(recorder, [recorder], buffer, recorder)
    if connection is not None:
        parts.uplink = TelemetryUplink(
            buffer,
            connection,
            topic=Topics(profile.fleet).telemetry(profile.device_id),
            device=profile.device_id,
            section=section,
        )
        parts.services.append(parts.uplink)
    log.info("telemetry buffer %s holds %d records (last seq %d)", path, buffer.depth, buffer.last_seq)
    return parts
