"""Device telemetry that survives being offline: a hot-path observer, a durable SQLite buffer
and a sink that deletes a record only once its destination stored it (the MQTT uplink by
default; see sinks.py). The daemon calls `build()` and wires the results in:

    parts = edge.telemetry.build(profile, connection)
    cascade.observers.append(parts.observer)
    for service in parts.services: service.start()       # stop in reverse order at exit
"""

from __future__ import annotations

from edgecascade.edge.telemetry.buffer import TelemetryBuffer
from edgecascade.edge.telemetry.build import TelemetryParts, build
from edgecascade.edge.telemetry.recorder import TelemetryRecorder
from edgecascade.edge.telemetry.sinks import SINKS, TelemetrySink

__all__ = ["SINKS", "TelemetryBuffer", "TelemetryParts", "TelemetryRecorder", "TelemetrySink", "build"]
