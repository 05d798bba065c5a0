"""Wiring for the daemon: the event sink a profile asks for and the camera source on top of it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgecascade.edge.sources.camera import CameraSource
from edgecascade.edge.sources.events import EventSink, MemoryEventSink
from edgecascade.edge.sources.frames import frame_answerer

if TYPE_CHECKING:
    from edgecascade.edge.agent import Agent
    from edgecascade.edge.config.profile import DeviceProfile
    from edgecascade.shared.mqtt import MqttConnection


def build_event_sink(agent: Agent, connection: MqttConnection | None, recent: int = 1000) -> EventSink:
    """MQTT events on the device's events topic when the profile publishes events and the daemon
    has a connection; otherwise the in-memory list of the `recent` newest events."""
    return _event_sink(agent.profile, connection, recent)


def build_camera_source(agent: Agent, connection: MqttConnection | None) -> CameraSource | None:
    """The camera Service for the daemon, or None when [camera] is not enabled."""
    return build(agent.profile, agent, connection)


def build(profile: DeviceProfile, agent: Agent, connection: MqttConnection | None) -> CameraSource | None:
    """The daemon's hook (edge/daemon/daemon.py): the camera Service of `profile`, or None."""
    if not profile.camera.enabled:
        return None
    sink = _event_sink(profile, connection, 1000)
    return CameraSource(
        profile.camera,
        frame_answerer(profile, agent),
        sink,
        device=profile.device_id,
        memory_budget_mb=profile.memory_budget_mb,
    )


def _event_sink(profile: DeviceProfile, connection: MqttConnection | None, recent: int) -> EventSink:
    if connection is None or not profile.camera.publish_events:
        return MemoryEventSink(recent)
    from edgecascade.edge.sources.mqtt_sink import MqttEventSink  # the MQTT adapter only when it is used
    from edgecascade.shared.mqtt import Topics

    topic = Topics(profile.fleet).events(profile.device_id)
    return MqttEventSink(connection, topic, qos=profile.camera.event_qos)
