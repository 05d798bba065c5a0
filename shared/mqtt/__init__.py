"""MQTT plumbing shared by the agent, the ingester and the fleet manager."""

from edgecascade.shared.mqtt.connection import MqttConnection, MqttSettings
from edgecascade.shared.mqtt.topics import Topics

__all__ = ["MqttConnection", "MqttSettings", "Topics"]
