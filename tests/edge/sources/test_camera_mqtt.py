"""A generated video through the real agent, events over a real Mosquitto to a real subscriber."""

from __future__ import annotations

import json
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edgecascade.edge.sources import (
    CameraSource,
    MemoryEventSink,
    build,
    build_camera_source,
    build_event_sink,
)
from edgecascade.edge.sources.mqtt_sink import MqttEventSink
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.tools.make_video import read_labels
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.sources.conftest import AgentFactory, VideoFactory


class Subscriber:
    """A separate paho client, as an NVR dashboard or the cloud would subscribe."""

    def __init__(self, port: int, topic: str) -> None:
        self.messages: list[dict[str, object]] = []
        self.ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-subscriber")
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, 1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.ready.set()
        self.client.on_message = lambda c, u, msg: self.messages.append(json.loads(msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def wait(self, count: int, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_video_events_reach_a_subscriber_over_mosquitto(
    broker: BrokerProcess, connection: MqttConnection, make_video: VideoFactory, make_agent: AgentFactory
) -> None:
    video = make_video(frames=540, fps=10.0)
    agent = make_agent(f'source = "{video}"\nfps = 10\nevent_qos = 1')
    topic = Topics("lab").events("cam-0001")
    subscriber = Subscriber(broker.port, topic)
    try:
        assert subscriber.ready.wait(5.0)
        source = build_camera_source(agent, connection)
        assert isinstance(source, CameraSource) and isinstance(source.sink, MqttEventSink)
        assert source.sink.topic == topic == "edgecascade/lab/cam-0001/events"
        source.start()
        assert source.wait_finished(20.0), source.counters()
        subscriber.wait(540)
        source.stop(2.0)
    finally:
        subscriber.close()
    assert source.counters()["events_published"] == 540
    events = subscriber.messages
    assert len(events) == 540 and [e["frame"] for e in events] == list(range(540))
    truth = read_labels(video)
    correct = sum(int(str(e["label"])) == truth[int(str(e["frame"]))] for e in events)
    assert correct / 540 == pytest.approx(agent.model.card.heldout_accuracy, abs=1e-6)
    first = events[0]
    assert set(first) == {
        "schema",
        "device",
        "frame",
        "ts",
        "label",
        "confidence",
        "source",
        "answered_by",
        "escalated",
        "degraded",
        "model",
    }
    assert first["schema"] == 1 and first["device"] == "cam-0001" and first["source"] == str(video)
    assert first["model"] == {"name": "digits-edge", "version": "1.0.0"}
    assert abs(float(str(first["ts"])) - time.time()) < 60


def test_events_while_the_broker_is_down_are_counted_not_buffered(
    broker: BrokerProcess, connection: MqttConnection, make_video: VideoFactory, make_agent: AgentFactory
) -> None:
    video = make_video(frames=40, fps=10.0)
    agent = make_agent(f'source = "{video}"\nfps = 10')
    broker.stop()
    deadline = time.monotonic() + 5
    while connection.connected.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    source = build_camera_source(agent, connection)
    assert source is not None
    source.start()
    assert source.wait_finished(10.0)
    source.stop(1.0)
    c = source.counters()
    assert c["frames_processed"] == 40 and c["events_dropped_offline"] == 40 and c["events_published"] == 0


def test_without_mqtt_the_daemon_keeps_recent_events_in_memory(
    make_video: VideoFactory, make_agent: AgentFactory
) -> None:
    video = make_video(frames=12)
    agent = make_agent(f'source = "{video}"\nfps = 10')
    sink = build_event_sink(agent, None, recent=5)
    assert isinstance(sink, MemoryEventSink)
    source = CameraSource.from_agent(agent, sink)
    source.start()
    assert source.wait_finished(10.0)
    source.stop(1.0)
    assert [e.frame for e in sink.recent()] == [7, 8, 9, 10, 11]
    assert [e.frame for e in sink.recent(2)] == [10, 11]
    assert sink.counters() == {"events_published": 12, "events_evicted": 7}
    hooked = build(agent.profile, agent, None)  # the daemon's hook
    assert isinstance(hooked, CameraSource) and isinstance(hooked.sink, MemoryEventSink)
    off = make_agent("enabled = false", device_id="cam-0002")
    assert build_camera_source(off, None) is None
