"""MQTT plumbing shared by the agent, the ingester and the fleet manager."""

from shared.mqtt.connection import MqttConnection, MqttSettings
from shared.mqtt.topics import Topics

__all__ = ["MqttConnection", "MqttSettings", "Topics"]
