"""Where the telemetry buffer's records go: one interface and the registry of implementations.

A sink is a Service that takes records from the buffer (`peek`) and deletes them
(`delete_ranges`/`delete`) only once its destination has confirmed it *stored* them, so a
crash of the sink, the network or anything in between costs a resend, never a record. The
MQTT sink (edge/telemetry/uplink.py) deletes on the ingester's acknowledgement.

To add one (an HTTP endpoint, a file on removable storage), write a module with a class that
has `name`, `start()`, `stop(timeout_s)`, `counters()` and a `from_context(context)`
classmethod, and add its name here; `[telemetry] sink = "<name>"` in a profile then selects it.
Implementations are imported only when selected.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from edgecascade.edge.config.profile import DeviceProfile
    from edgecascade.edge.telemetry.buffer import TelemetryBuffer
    from edgecascade.shared.mqtt import MqttConnection

#: Sink name (the profile's `telemetry.sink`) -> "module:Class".
SINKS: dict[str, str] = {
    "mqtt": "edgecascade.edge.telemetry.uplink:TelemetryUplink",
}


@dataclass(frozen=True)
class SinkContext:
    """What a sink may use: the profile, the buffer it drains, and the device's MQTT
    connection (None when mqtt is switched off)."""

    profile: DeviceProfile
    buffer: TelemetryBuffer
    connection: MqttConnection | None


class TelemetrySink(Protocol):
    """A Service draining the buffer. `start()` begins sending in the background; `stop()`
    waits up to `timeout_s` for confirmations still owed; `counters()` feeds the metrics record."""

    name: str

    def start(self) -> None: ...

    def stop(self, timeout_s: float) -> None: ...

    def counters(self) -> dict[str, int]: ...


class SinkFactory(Protocol):
    def from_context(self, context: SinkContext) -> TelemetrySink | None:
        """The sink for this device, or None when it cannot send now (its transport is off);
        the records then stay in the buffer, bounded by its cap."""
        ...


def make_sink(name: str, context: SinkContext) -> TelemetrySink | None:
    """Build the sink registered as `name` (validated against SINKS by the profile)."""
    module_name, cls_name = SINKS[name].split(":")
    factory: SinkFactory = getattr(importlib.import_module(module_name), cls_name)
    return factory.from_context(context)
