"""Device telemetry that survives being offline: a hot-path observer, a durable SQLite buffer
and an MQTT uplink. The daemon calls `build()` and wires the results in:

    observer, services = edge.telemetry.build(profile, connection)
    cascade.observers.append(observer)
    for service in services: service.start()       # stop in reverse order at exit
"""

from __future__ import annotations

from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.edge.telemetry.build import TelemetryParts, build
from edgecascade.edge.telemetry.recorder import TelemetryRecorder
from edgecascade.edge.telemetry.uplink import TelemetryUplink

__all__ = ["TelemetryBuffer", "TelemetryParts", "TelemetryRecorder", "TelemetryUplink", "build"]
