"""MQTT plumbing shared by the agent, the ingester and the fleet manager."""

from typing import TYPE_CHECKING, Any

from edgecascade.shared.mqtt.topics import Topics

if TYPE_CHECKING:
    from edgecascade.shared.mqtt.connection import MqttConnection, MqttSettings


def __getattr__(name: str) -> Any:
    # paho-mqtt is imported only by a process that connects to a broker; topics need no client.
    if name in ("MqttConnection", "MqttSettings"):
        import importlib

        return getattr(importlib.import_module("edgecascade.shared.mqtt.connection"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MqttConnection", "MqttSettings", "Topics"]
