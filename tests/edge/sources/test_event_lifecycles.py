"""A detector's object events across a real Mosquitto outage: lost events are not replayed,
but a subscriber still sees every object begin with `new` and end with one `end`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from edgecascade.edge.sources.events import CameraEvent, DetectionEvent
from edgecascade.edge.sources.lifecycles import Lifecycles
from edgecascade.edge.sources.mqtt_sink import MqttEventSink
from edgecascade.shared.mqtt import MqttConnection, Topics
from edgecascade.tools.mqtt_broker import BrokerProcess
from tests.edge.sources.test_camera_mqtt import Subscriber

TOPIC = Topics("lab").events("cam-0001")


def _event(kind: Literal["new", "update", "end"], obj: str, frame: int) -> DetectionEvent:
    return DetectionEvent(
        type=kind,
        id=obj,
        device="cam-0001",
        source="test",
        frame=frame,
        ts=1_700_000_000.0 + frame,
        label="3",
        score=0.9,
        top_score=0.9,
        box=(0.1, 0.1, 0.2, 0.2),
        first_frame=0,
        answered_by="edge",
        escalated=False,
        degraded=False,
        model=None,
    )


def _wait(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert condition(), "timed out"


def test_object_lifecycles_stay_whole_across_a_broker_outage(
    broker: BrokerProcess, connection: MqttConnection
) -> None:
    sink = MqttEventSink(connection, TOPIC, qos=1)
    subscriber = Subscriber(broker.port, TOPIC)
    try:
        assert subscriber.ready.wait(5.0)
        sink.publish(_event("new", "a", 1))
        sink.publish(_event("new", "b", 1))
        sink.publish(_event("update", "a", 2))
        subscriber.wait(3)
        broker.stop()
        _wait(lambda: not connection.connected.is_set())
        sink.publish(_event("end", "a", 3))  # a was announced: its end must arrive later
        sink.publish(_event("new", "c", 3))  # lost: c's next event must say new
        sink.publish(_event("update", "c", 4))
        sink.publish(_event("new", "d", 4))  # d lives and ends inside the outage: never seen
        sink.publish(_event("end", "d", 5))
        subscriber.ready.clear()
        broker.start()
        _wait(connection.connected.is_set)
        assert subscriber.ready.wait(10.0)
        sink.publish(_event("update", "c", 6))  # sent as new, after a's late end
        sink.publish(_event("update", "b", 6))
        sink.publish(_event("end", "b", 7))
        sink.publish(_event("end", "c", 7))
        subscriber.wait(8)
        time.sleep(0.3)  # nothing more may arrive
    finally:
        subscriber.close()
    got = [(m["type"], m["id"], m["frame"]) for m in subscriber.messages]
    assert got == [
        ("new", "a", 1),
        ("new", "b", 1),
        ("update", "a", 2),
        ("end", "a", 3),  # late, with its own frame
        ("new", "c", 6),
        ("update", "b", 6),
        ("end", "b", 7),
        ("end", "c", 7),
    ]
    c = sink.counters()
    assert c["events_dropped_offline"] == 5 and c["events_published"] == 8
    assert c["events_end_late"] == 1 and c["events_sent_as_new"] == 1
    assert c["events_end_unannounced"] == 0  # d's end was dropped offline, not suppressed
    assert c["events_ends_pending"] == 0


def test_an_end_for_an_object_never_announced_is_not_sent() -> None:
    lifecycles = Lifecycles()
    lost_new = _event("new", "x", 1)
    lifecycles.missed(lost_new)
    assert lifecycles.due(_event("end", "x", 2)) == []
    assert lifecycles.counters()["events_end_unannounced"] == 1


def test_a_late_end_that_fails_again_is_kept_and_classifier_events_pass_through() -> None:
    lifecycles = Lifecycles()
    new = _event("new", "a", 1)
    assert lifecycles.due(new) == [new]
    lifecycles.sent(new)
    end = _event("end", "a", 2)
    lifecycles.missed(end)
    frame = CameraEvent("cam-0001", 3, 0.0, "3", 0.9, "test", "edge", False, False, None)
    first = lifecycles.due(frame)
    assert first == [end, frame]
    lifecycles.missed(end)  # the broker dropped again
    assert lifecycles.counters()["events_ends_pending"] == 1
    assert lifecycles.due(frame) == [end, frame]
    lifecycles.sent(end)
    assert lifecycles.due(frame) == [frame]
    assert lifecycles.counters()["events_end_late"] == 1


def test_memory_is_bounded_by_max_objects() -> None:
    lifecycles = Lifecycles(max_objects=3)
    for i in range(10):
        lifecycles.sent(_event("new", str(i), i))
        lifecycles.missed(_event("end", str(i), i + 1))
    c = lifecycles.counters()
    assert c["objects_forgotten"] == 7 and c["events_ends_pending"] == 3
    late = lifecycles.due(_event("new", "z", 20))[:-1]
    assert [(e.type, e.id) for e in late if isinstance(e, DetectionEvent)] == [
        ("end", "7"),
        ("end", "8"),
        ("end", "9"),
    ]
