"""The MQTT adapter of EventSink: events go to the device's events topic on the daemon's one
shared connection. Live detections are not buffered across an outage (stale detections are of
little use and an unbounded backlog grows memory); each one not sent is counted and logged, and
each tracked object's lifecycle stays whole for subscribers (edge/sources/lifecycles.py)."""

from __future__ import annotations

import logging

import paho.mqtt.client as mqtt

from edgecascade.edge.sources.events import Event
from edgecascade.edge.sources.lifecycles import Lifecycles
from edgecascade.shared.errors import TransportError
from edgecascade.shared.mqtt import MqttConnection

log = logging.getLogger(__name__)


class MqttEventSink:
    def __init__(self, connection: MqttConnection, topic: str, qos: int = 0) -> None:
        self.connection = connection
        self.topic = topic
        self.qos = qos
        self.published = 0
        self.dropped_offline = 0
        self.failed = 0
        self._outage_logged = False
        self.lifecycles = Lifecycles()

    def publish(self, event: Event) -> None:
        if not self.connection.connected.is_set():
            self.dropped_offline += 1
            self.lifecycles.missed(event)
            if not self._outage_logged:  # once per outage, not per frame
                log.warning(
                    "MQTT is down: camera events to %s are dropped (counted) until it is back", self.topic
                )
                self._outage_logged = True
            return
        if self._outage_logged:
            log.info("MQTT is back: camera events flow again (%d dropped so far)", self.dropped_offline)
            self._outage_logged = False
        for due in self.lifecycles.due(event):
            if self._send(due):
                self.lifecycles.sent(due)
            else:
                self.lifecycles.missed(due)

    def _send(self, event: Event) -> bool:
        try:
            info = self.connection.publish(self.topic, event.to_json(), qos=self.qos)
        except TransportError as exc:
            self._fail("%s", exc)
            return False
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self._fail("paho rc %s", mqtt.error_string(info.rc))
            return False
        self.published += 1
        return True

    def _fail(self, fmt: str, detail: object) -> None:
        self.failed += 1
        if self.failed == 1 or self.failed % 100 == 0:
            log.warning("camera event to %s not sent (%d so far): " + fmt, self.topic, self.failed, detail)

    def counters(self) -> dict[str, int]:
        return {
            "events_published": self.published,
            "events_dropped_offline": self.dropped_offline,
            "events_failed": self.failed,
            **self.lifecycles.counters(),
        }
