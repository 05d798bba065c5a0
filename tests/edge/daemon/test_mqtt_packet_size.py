"""MQTT 5 Maximum Packet Size over a real Mosquitto: a publish to the agent's topics bigger
than it takes is dropped by the broker, never read into the agent's memory."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from edgecascade.edge.config.profile import DeviceProfile
from edgecascade.edge.daemon.daemon import _mqtt_connection
from edgecascade.shared.mqtt import MqttConnection, MqttSettings
from edgecascade.tools.mqtt_broker import BrokerProcess


def test_packets_over_the_limit_never_reach_the_client(broker: BrokerProcess) -> None:
    if not broker.supports_mqtt5:
        pytest.skip("Maximum Packet Size is MQTT 5; this broker (amqtt) speaks 3.1.1")
    got: list[int] = []
    arrived = threading.Event()

    def on_message(msg: mqtt.MQTTMessage) -> None:
        got.append(len(msg.payload))
        arrived.set()

    conn = MqttConnection(MqttSettings(port=broker.port, client_id="small", max_packet_bytes=4096))
    conn.subscribe("t/in", on_message)
    assert conn.start(wait_s=5.0)
    sender = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sender", protocol=MQTTProtocolVersion.MQTTv5)
    sender.connect("127.0.0.1", broker.port)
    sender.loop_start()
    try:
        time.sleep(0.3)  # the subscription is in place
        sender.publish("t/in", b"x" * 100_000, qos=1).wait_for_publish(5)
        sender.publish("t/in", b"y" * 100, qos=1).wait_for_publish(5)
        assert arrived.wait(5.0)
        time.sleep(0.3)
        assert got == [100]  # the big one was dropped by the broker; the connection is fine
        assert conn.connected.is_set()
    finally:
        sender.loop_stop()
        sender.disconnect()
        conn.stop()


def test_the_agent_takes_packets_up_to_a_request_body_and_a_megabyte() -> None:
    profile = DeviceProfile.model_validate(
        {
            "profile": "t",
            "data_dir": "/tmp/unused",
            "memory_budget_mb": 64,
            "model": {"path": "/tmp/unused/m.tflite"},
            "mqtt": {"enabled": True},
            "api": {"max_body_mb": 2},
        }
    )
    conn = _mqtt_connection(profile)
    assert conn is not None and conn.settings.max_packet_bytes == 3 << 20
